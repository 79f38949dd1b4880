//! The MongoDB-wire server (mongo-java-server on an H2 MVStore file): its command line.

use std::path::Path;
use std::process::Command;

use crate::layout::Layout;
use crate::provision;

/// The MongoDB-wire server on `port` keeping its data in `data_file` (an H2 MVStore file).
/// The heap holds the store's page cache (an eighth of it: 128 MB) and the in-memory indexes
/// (a 384 MB heap filled at about 100,000 products once they moved there), and the serial collector
/// keeps the footprint small on two cores. The heap starts at 512 MB with a fixed 256 MB young
/// generation: started at 32 MB, the collector spent a tenth of a core under the checkout (at
/// 50 orders/s, 144 young and 8 full collections in 40 s, 4.2 s of pauses, each stalling every
/// client) growing a young generation of 25-50 MB; with 256 MB, 23 young and no full
/// collection, 1.9-2.0 s, and 0.5-0.9 ms less of this server's CPU per paid order, for an RSS
/// of 630 MB instead of 285 MB (docs/ARCHITECTURE.md, "What it costs as data accumulates").
/// Netty's pooled allocator reserves arenas of direct memory per core; unpooled buffers and a
/// cap on direct memory cut the RSS after `mongo-bench` from 198 to 140 MB with the same
/// throughput (measured). The library's BSON encoder writes a byte at a time, and Netty checked
/// on every byte that the buffer had not been released (a volatile read of its reference
/// count): about a tenth of this server's CPU under the checkout (JFR). The check only turns a
/// use of a buffer after its release (a bug in the library) into an exception; it is off
/// (`io.netty.buffer.checkAccessible`) on this development server, with unpooled buffers (a
/// released one is never recycled for other data) and the bounds checks kept. Compose and
/// Kubernetes run MongoDB itself. `java` is the JVM's command so far ([`super::java`]).
pub fn mongo_wire_command(layout: &Layout, port: u16, data_file: &Path, java: Command) -> Command {
    let mut cmd = java;
    cmd.args([
        "-Xms512m",
        "-Xmn256m",
        "-Xmx1g",
        "-XX:+UseSerialGC",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:MaxDirectMemorySize=64m",
        "-XX:ReservedCodeCacheSize=48m",
        "-Xss512k",
        "-Dio.netty.allocator.type=unpooled",
        "-Dio.netty.buffer.checkAccessible=false",
        "-cp",
    ])
    .arg(provision::mongo_wire_classpath(layout))
    .arg("MongoWireServer")
    .arg("127.0.0.1")
    .arg(port.to_string())
    .arg(data_file);
    cmd
}
