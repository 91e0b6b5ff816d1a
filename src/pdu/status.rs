//! TP-ST (TS 23.040 §9.2.3.15): the status a report carries, and the category a
//! gateway acts on — delivered, pending (the SMSC is still trying) or failed.

/// The raw TP-ST octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

/// What a status means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCategory {
    /// 0x00–0x1F: the handset has the message (or the SMSC replaced it, as asked).
    Delivered,
    /// A temporary error; the SMSC keeps trying, so a final report will follow.
    Pending,
    /// 0x40 and up: the SMSC gave up (permanent error, or temporary and no longer
    /// trying).
    Failed,
}

impl StatusCategory {
    /// `delivered`, `pending` or `failed`, as reports and the CLI name it.
    pub fn name(self) -> &'static str {
        match self {
            StatusCategory::Delivered => "delivered",
            StatusCategory::Pending => "pending",
            StatusCategory::Failed => "failed",
        }
    }
}

impl Status {
    /// The category. Reserved values (0x80 and up) count as failed: TS 23.040 tells the
    /// receiver to treat unknown values as "service rejected" (0x63).
    pub fn category(self) -> StatusCategory {
        match self.0 {
            0x00..=0x1F => StatusCategory::Delivered,
            0x20..=0x3F => StatusCategory::Pending,
            _ => StatusCategory::Failed,
        }
    }

    /// The spec's wording for the defined values.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x00 => "received by the SME",
            0x01 => "forwarded to the SME but delivery could not be confirmed",
            0x02 => "replaced by the SC",
            0x03..=0x0F => "completed (reserved value)",
            0x10..=0x1F => "completed (SC-specific value)",
            0x20 | 0x60 => "congestion",
            0x21 | 0x61 => "SME busy",
            0x22 | 0x62 => "no response from SME",
            0x23 | 0x63 => "service rejected",
            0x24 | 0x44 | 0x64 => "quality of service not available",
            0x25 | 0x65 => "error in SME",
            0x26..=0x2F | 0x4A..=0x4F | 0x66..=0x6F => "reserved",
            0x30..=0x3F | 0x50..=0x5F | 0x70..=0x7F => "SC-specific error",
            0x40 => "remote procedure error",
            0x41 => "incompatible destination",
            0x42 => "connection rejected by SME",
            0x43 => "not obtainable",
            0x45 => "no interworking available",
            0x46 => "validity period expired",
            0x47 => "deleted by originating SME",
            0x48 => "deleted by SC administration",
            0x49 => "message does not exist",
            _ => "reserved value (treated as service rejected)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        assert_eq!(Status(0x00).category(), StatusCategory::Delivered);
        assert_eq!(Status(0x02).category(), StatusCategory::Delivered);
        assert_eq!(Status(0x20).category(), StatusCategory::Pending);
        assert_eq!(Status(0x3F).category(), StatusCategory::Pending);
        assert_eq!(Status(0x46).category(), StatusCategory::Failed);
        assert_eq!(Status(0x60).category(), StatusCategory::Failed);
        assert_eq!(Status(0xFF).category(), StatusCategory::Failed);
        assert_eq!(Status(0x46).description(), "validity period expired");
    }
}
