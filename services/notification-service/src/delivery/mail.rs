//! E-mail over SMTP (lettre), with a pool of connections shared by the senders.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret as _;
use uuid::Uuid;

use super::SendError;
use crate::config::SmtpConfig;

/// The `Message-ID` of the mail for `event_id`: the same on every attempt, so a mail sent
/// again after a crash is recognisable as the same message (mail clients and many servers
/// collapse duplicates by it).
pub fn message_id(event_id: Uuid) -> String {
    format!("<{event_id}.email@notification-service.ferroshop>")
}

/// One e-mail ready to go.
#[derive(Debug, Clone, Copy)]
pub struct Mail<'a> {
    pub event_id: Uuid,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
}

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A pooled SMTP client; `connections` caps the open connections (one per sender).
    pub fn new(config: &SmtpConfig, connections: usize) -> anyhow::Result<Self> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|error| anyhow::anyhow!("MAIL_FROM is not a mailbox: {error}"))?;
        // Plain SMTP: the local server (Mailpit) speaks no TLS. A deployment behind a relay
        // that requires TLS needs lettre's TLS feature and `relay()` here.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(config.timeout))
            .hello_name(ClientId::Domain("notification-service.ferroshop".into()))
            .pool_config(
                PoolConfig::new().max_size(u32::try_from(connections).unwrap_or(u32::MAX)),
            );
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Sends `mail`; returns the server's reply (its queue id) as the provider reference.
    pub async fn send(&self, mail: Mail<'_>) -> Result<String, SendError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|error| SendError::Permanent(format!("invalid recipient address: {error}")))?;
        let message = Message::builder()
            .message_id(Some(message_id(mail.event_id)))
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .multipart(MultiPart::alternative_plain_html(
                mail.text.to_owned(),
                mail.html.to_owned(),
            ))
            .map_err(|error| SendError::Permanent(format!("cannot build the mail: {error}")))?;
        match self.transport.send(message).await {
            Ok(response) => Ok(response.message().collect::<Vec<_>>().join(" ")),
            // 5xx: the server refuses this mail for good (unknown mailbox, policy).
            Err(error) if error.is_permanent() => {
                Err(SendError::Permanent(format!("SMTP refused: {error}")))
            }
            Err(error) => Err(SendError::Transient(format!("SMTP: {error}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_is_a_function_of_the_event() {
        let id = Uuid::nil();
        assert_eq!(message_id(id), message_id(id));
        assert_eq!(
            message_id(id),
            "<00000000-0000-0000-0000-000000000000.email@notification-service.ferroshop>"
        );
    }
}
