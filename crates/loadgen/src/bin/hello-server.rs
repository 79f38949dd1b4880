//! A bare hyper server answering every request with a small JSON body: the ceiling for the
//! gateway-overhead benchmark. Prints `listening on http://ADDR` once bound (port 0 picks a
//! free port), and stops on SIGTERM or Ctrl-C.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "hello-server",
    about = "bare hyper hello-world server (benchmark ceiling)"
)]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, env = "PORT", default_value_t = 8099)]
    port: u16,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", args.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let mut out = std::io::stdout();
        writeln!(out, "listening on http://{addr}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
        loadgen::hello::serve(listener, shutdown_signal()).await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        // Without a SIGTERM handler Ctrl-C still works.
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
