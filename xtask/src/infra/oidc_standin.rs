//! The OIDC stand-in for Google (mock-oauth2-server): its command line.

use std::process::Command;

use crate::layout::Layout;
use crate::provision;

/// The OIDC stand-in for Google on `port`, on loopback, configured from the repository's
/// `deploy/local/oidc-standin/config.json` (issuer `google`: its issuer URL is
/// `http://127.0.0.1:<port>/google`, and its ID tokens carry `email` and `email_verified`).
/// Its signing keys come from the library's bundled test key file: public, fit for a stand-in
/// only (user-service takes them from its JWKS like any provider's). `java` is the JVM's
/// command so far ([`super::java`]).
pub fn oidc_standin_command(layout: &Layout, port: u16, java: Command) -> Command {
    let mut cmd = java;
    cmd.args([
        "-Xms16m",
        "-Xmx128m",
        "-XX:+UseSerialGC",
        "-XX:+ExitOnOutOfMemoryError",
        "-cp",
    ])
    .arg(provision::oidc_standin_classpath(layout))
    .arg(provision::OIDC_STANDIN_MAIN)
    .env("SERVER_HOSTNAME", "127.0.0.1")
    .env("SERVER_PORT", port.to_string())
    .env("JSON_CONFIG_PATH", provision::oidc_standin_config(layout))
    // A JSON_CONFIG in the caller's environment would take precedence over the file.
    .env_remove("JSON_CONFIG")
    .env_remove("PORT");
    cmd
}
