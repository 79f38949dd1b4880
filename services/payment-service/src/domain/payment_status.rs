//! A payment's life:
//!
//! ```text
//! processing --charged--> succeeded --order cancelled--> refunding --> refunded
//!     |   \--declined / provider error--> failed
//!     \--timeout--> pending --(reconciler asks the provider)--> succeeded | failed
//! ```
//!
//! Every change is decided on the status read and written by an update guarded by the
//! payment's revision (so the status it leaves is still the status it read), so each outcome
//! (and its event) happens once, whoever gets there first: the request, the reconciler, or a
//! redelivered order event.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// A request is calling the provider.
    Processing,
    /// The provider's answer is unknown (timeout); the reconciler will find out.
    Pending,
    Succeeded,
    Failed,
    /// The order was cancelled; the refund is under way.
    Refunding,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "processing" => Self::Processing,
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "refunding" => Self::Refunding,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }

    /// Whether the charge's outcome may still be recorded.
    pub fn awaits_outcome(self) -> bool {
        matches!(self, Self::Processing | Self::Pending)
    }

    /// Whether the client has the final answer of the charge.
    pub fn is_settled(self) -> bool {
        !self.awaits_outcome()
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::*;

    #[test]
    fn only_unknown_outcomes_can_still_be_recorded() {
        for status in [Processing, Pending, Succeeded, Failed, Refunding, Refunded] {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                status.awaits_outcome(),
                matches!(status, Processing | Pending)
            );
            assert_eq!(status.is_settled(), !status.awaits_outcome());
        }
    }
}
