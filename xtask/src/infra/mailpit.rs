//! Mailpit, the development SMTP server and inbox: its command line.

use std::path::Path;
use std::process::Command;

use crate::layout::{Layout, Settings};
use crate::provision;

/// Mailpit taking SMTP on `s.smtp_port` and serving its inbox and API on `s.mailpit_port`,
/// both on loopback, with its database in `data`.
pub(super) fn mailpit_command(layout: &Layout, s: &Settings, data: &Path) -> Command {
    let mut cmd = Command::new(provision::mailpit_bin(layout));
    cmd.arg("--smtp")
        .arg(format!("127.0.0.1:{}", s.smtp_port))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", s.mailpit_port))
        .arg("--database")
        .arg(data.join("mailpit.db"))
        .args(["--smtp-auth-accept-any", "--smtp-auth-allow-insecure"])
        // Mailpit prunes all but the newest 500 messages by default; a test run sends
        // thousands (one suite bursts 1,000) and reads its own back while others send.
        .args(["--max", "50000"]);
    cmd
}
