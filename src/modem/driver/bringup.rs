//! Bring-up: from "port open" to "ready to send and receive" — sync, identity, SIM and
//! PIN, PDU mode, SMSC, storage, `+CNMI` negotiation and the operator's init commands,
//! waiting out a busy SIM with backoff.

use super::{BUSY_FIRST_DELAY, Modem, ModemState, Smsc, describe_result, sim_error};
use crate::at::{CmeError, CmsError, Command, FinalResult, Urc, info_params};
use crate::modem::error::ModemError;
use crate::modem::info::{
    Capabilities, Cnmi, SimState, Storage, first_value, is_storage_name, parse_csca,
    parse_iccid_line,
};
use crate::pdu::{Address, TypeOfNumber};
use tracing::{info, warn};

impl Modem {
    /// Brings the modem from "port open" to "ready to send and receive". Fails with
    /// [`ModemError::Sim`] (state `SimLocked`) when the SIM cannot be unlocked. A SIM
    /// still busy after [`Timeouts::sim_wait`] is not a failure: the modem is held
    /// (state `SimLocked` saying so, `sim: busy`) and brought up again at the next
    /// health poll.
    pub async fn bring_up(&mut self) -> Result<(), ModemError> {
        // Cleared first: a bring-up that fails is retried by recovery or reopen, never
        // by spinning on the flag.
        self.needs_bring_up = false;
        self.busy_until = Some(self.now() + self.cfg.timeouts.sim_wait);
        let r = self.bring_up_steps().await;
        self.busy_until = None;
        r
    }

    async fn bring_up_steps(&mut self) -> Result<(), ModemError> {
        self.sync().await?;
        self.query(self.short(Command::new("ATE0"))).await?;
        self.query(self.short(Command::new("AT+CMEE=1"))).await?;
        self.identify().await?;
        match self.unlock_sim().await {
            Ok(true) => {}
            Ok(false) => {
                self.hold_busy_sim();
                return Ok(());
            }
            Err(e) => {
                if let ModemError::Sim(reason) = &e {
                    self.set_state(ModemState::SimLocked(reason.clone()));
                }
                self.publish();
                return Err(e);
            }
        }
        if std::mem::take(&mut self.sim_busy) {
            // Leaves the busy hold: the health poll below decides the state.
            self.set_state(ModemState::Starting);
        }
        // The SIM is ready; its SMS side may still be busy a moment (`+CMS ERROR: 314`):
        // a fresh wait for the rest of the bring-up.
        self.busy_until = Some(self.now() + self.cfg.timeouts.sim_wait);
        self.forget_boot_urcs().await?;
        self.report.imsi = match self.query(self.short(Command::cimi())).await? {
            Some(lines) => first_value(&lines, &["+CIMI:"]),
            None => None,
        };
        self.ok(self.short(Command::new("AT+CMGF=0"))).await?;
        self.check_smsc().await?;
        self.csms1 = self
            .query(self.short(Command::new("AT+CSMS=1").with_info("+CSMS:")))
            .await?
            .is_some();
        self.choose_storage().await?;
        self.negotiate_cnmi().await?;
        self.report.capabilities =
            Some(Capabilities::from_setup(self.storage_ok, self.report.cnmi));
        // Caller ids for the log when calls are rejected; firmware without it still
        // says RING.
        self.query(self.short(Command::new("AT+CLIP=1"))).await?;
        self.query(self.short(Command::new("AT+CREG=2"))).await?;
        self.query(self.short(Command::new("AT+CEREG=2"))).await?;
        for line in self.cfg.init.clone() {
            if self.query(self.short(Command::new(&line))).await?.is_none() {
                warn!(modem = %self.name(), command = %line, "the modem refused an init command");
            }
        }
        self.refresh().await?;
        if self.cfg.sweep && self.storage_ok {
            self.sweep().await?;
        }
        Ok(())
    }

    /// The SIM stayed busy through the whole wait: report it, keep the modem out of
    /// use, and try again at the next health poll.
    fn hold_busy_sim(&mut self) {
        self.sim_busy = true;
        self.report.sim = Some(SimState::Busy);
        self.report.capabilities = None;
        self.publish();
        let reason = format!(
            "SIM busy (still initialising after {:?}); checked again at the next health poll",
            self.cfg.timeouts.sim_wait
        );
        warn!(modem = %self.name(), "{reason}");
        self.set_state(ModemState::SimLocked(reason));
    }

    /// Drops the boot and SIM-progress URCs that arrived while the SIM was being waited
    /// for (`RDY`, `+CFUN: 1`, `+CPIN: NOT READY`, `SMS Ready`, ...): they describe the
    /// start this bring-up already handles, and would otherwise start another one. If
    /// the modem restarted meanwhile, its error and echo settings are made again.
    async fn forget_boot_urcs(&mut self) -> Result<(), ModemError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let mut restarted = false;
        let keep: Vec<Urc> = conn
            .take_urcs()
            .into_iter()
            .filter(|u| {
                restarted |= u.is_restart();
                !matches!(
                    u,
                    Urc::Rdy
                        | Urc::SysStart
                        | Urc::Cfun(_)
                        | Urc::Cpin(_)
                        | Urc::Simst(_)
                        | Urc::SmsReady
                        | Urc::CallReady
                        | Urc::Status(_)
                )
            })
            .collect();
        conn.requeue_urcs(keep);
        if restarted {
            self.query(self.short(Command::new("ATE0"))).await?;
            self.query(self.short(Command::new("AT+CMEE=1"))).await?;
        }
        Ok(())
    }

    /// Plain `AT` until the modem answers anything.
    pub(super) async fn sync(&mut self) -> Result<(), ModemError> {
        for _ in 0..self.cfg.sync_attempts.max(1) {
            match self.exec(self.short(Command::new("AT"))).await {
                // Any final result, even ERROR, proves it listens.
                Ok(_) => return Ok(()),
                Err(ModemError::Timeout { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ModemError::NoAnswer)
    }

    async fn identify(&mut self) -> Result<(), ModemError> {
        self.report.manufacturer = self
            .query(self.short(Command::cgmi()))
            .await?
            .and_then(|l| first_value(&l, &["+CGMI:"]));
        self.report.model = self
            .query(self.short(Command::cgmm()))
            .await?
            .and_then(|l| first_value(&l, &["+CGMM:"]));
        let cgmr = Command::new("AT+CGMR")
            .with_info("+CGMR:")
            .with_raw_info()
            .lenient();
        self.report.revision = self
            .query(self.short(cgmr))
            .await?
            .and_then(|l| first_value(&l, &["+CGMR:", "Revision:"]))
            .or(self.report.revision.take());
        self.report.imei = self
            .query(self.short(Command::cgsn()))
            .await?
            .and_then(|l| first_value(&l, &["+CGSN:"]));
        self.report.iccid = self.read_iccid().await?;
        self.publish();
        Ok(())
    }

    /// The ICCID (keys the PIN and SMSC configuration, and the SIM's quotas): `+CCID`,
    /// the standard EF_ICCID read (`+CRSM`), then the vendor spellings; each answer goes
    /// through [`parse_iccid_line`], which also undoes nibble-swapping wherever it occurs.
    /// `None` when no command gives one (the IMSI then identifies the SIM, see
    /// [`Report::sim_key`]). A busy SIM is waited out by [`Modem::exec`].
    async fn read_iccid(&mut self) -> Result<Option<String>, ModemError> {
        // Sources: ModemManager (src/mm-base-sim.c: +CRSM EF_ICCID read and its
        // parse_iccid; plugins: ublox +CCID, huawei ^ICCID, sierra !ICCID), the
        // Quectel (+QCCID), Telit (#CCID), Cinterion (^SCID) and SIMCom (+ICCID,
        // SIM7xxx/A76xx +CICCID answered with +ICCID:, +CICCID: or +CCID:) AT manuals as
        // quoted by public drivers.
        let asks = [
            Command::new("AT+CCID")
                .with_info("+CCID:")
                .with_info("+ICCID:")
                .with_raw_info(),
            Command::crsm_iccid(),
            Command::new("AT^ICCID?").with_info("^ICCID:"),
            Command::new("AT+QCCID")
                .with_info("+QCCID:")
                .with_raw_info(),
            Command::new("AT#CCID").with_info("#CCID:").with_raw_info(),
            Command::new("AT^SCID").with_info("^SCID:").with_raw_info(),
            Command::new("AT!ICCID?").with_info("!ICCID:"),
            Command::new("AT+ICCID")
                .with_info("+ICCID:")
                .with_raw_info(),
            Command::new("AT+CICCID")
                .with_info("+ICCID:")
                .with_info("+CCID:")
                .with_raw_info(),
        ];
        for cmd in asks {
            let reply = self.exec(self.short(cmd.lenient())).await?;
            if reply.result.is_ok() {
                if let Some(iccid) = reply.lines.iter().find_map(|l| parse_iccid_line(l)) {
                    return Ok(Some(iccid));
                }
                continue;
            }
            if let FinalResult::CmeError(e) = &reply.result
                && matches!(
                    e.code(),
                    Some(CmeError::SIM_NOT_INSERTED | CmeError::SIM_FAILURE)
                )
            {
                // No SIM to read: no other command will find one.
                break;
            }
        }
        Ok(None)
    }

    /// `AT+CPIN?`, waiting out a busy or initialising SIM (`+CPIN: NOT READY`; busy
    /// refusals are waited out by [`Modem::exec`]). When several `+CPIN:` lines came
    /// (a URC next to the answer), the newest wins, and if they disagree the SIM is
    /// changing state: it is asked again.
    async fn sim_state(&mut self) -> Result<SimState, ModemError> {
        let mut delay = BUSY_FIRST_DELAY;
        loop {
            let reply = self.exec(self.short(Command::cpin_query())).await?;
            let (st, changing) = match reply.result {
                r if r.is_ok() => {
                    let codes: Vec<SimState> = reply
                        .lines
                        .iter()
                        .filter_map(|l| info_params(l, "+CPIN:"))
                        .filter_map(|p| p.first().map(|c| SimState::from_cpin(c)))
                        .collect();
                    let st = codes
                        .last()
                        .cloned()
                        .unwrap_or(SimState::Other("no +CPIN line".into()));
                    let changing = codes.iter().any(|c| *c != st);
                    (st, changing)
                }
                FinalResult::CmeError(e) => (
                    e.code()
                        .and_then(SimState::from_cme)
                        .unwrap_or_else(|| SimState::Other(e.to_string())),
                    false,
                ),
                r if r.is_busy() => (SimState::Busy, false),
                other => (SimState::Other(format!("{other:?}")), false),
            };
            if (st == SimState::Busy || changing) && self.busy_backoff(&mut delay).await {
                continue;
            }
            return Ok(st);
        }
    }

    /// Enters the configured PIN, at most once per SIM and process lifetime if rejected.
    /// `Ok(true)` when the SIM is ready, `Ok(false)` when it stayed busy.
    async fn unlock_sim(&mut self) -> Result<bool, ModemError> {
        let st = self.sim_state().await?;
        self.report.sim = Some(st.clone());
        match st {
            SimState::Ready => return Ok(true),
            SimState::Busy => return Ok(false),
            SimState::Pin => {}
            other => {
                return Err(sim_error(format!("SIM {}: needs a human", other.as_str())));
            }
        }
        // The rejected-PIN record is keyed by ICCID. A modem that gives none still gets
        // the `*` PIN, recorded against the modem itself (its IMEI, else its port).
        let (key, label) = match &self.report.iccid {
            Some(iccid) => (iccid.clone(), format!("ICCID {iccid}")),
            None => {
                let modem = self.report.imei.clone().map_or_else(
                    || format!("port:{}", self.opener.describe()),
                    |i| format!("imei:{i}"),
                );
                (
                    modem.clone(),
                    format!("the SIM in {modem} (ICCID unreadable)"),
                )
            }
        };
        let Some(pin) = self
            .report
            .iccid
            .as_ref()
            .and_then(|i| self.cfg.pins.get(i))
            .or_else(|| self.cfg.pins.get("*"))
            .cloned()
        else {
            return Err(sim_error(format!(
                "SIM PIN required; no PIN configured for {label}"
            )));
        };
        if self.cfg.rejected_pins.blocks(&key, &pin) {
            return Err(sim_error(format!(
                "SIM PIN required; the configured PIN for {label} was rejected before and \
                 is not retried automatically (a PUK lock is one wrong try away)"
            )));
        }
        if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(sim_error(format!(
                "the PIN configured for {label} is not 4-8 digits; not sent"
            )));
        }
        let cmd = self.short(Command::new(format!("AT+CPIN=\"{pin}\"")));
        match self.exec(cmd).await {
            Ok(r) if r.result.is_ok() => {}
            // Still busy after the wait: the PIN was not checked, this try did not count.
            Ok(r) if r.result.is_busy() => return Ok(false),
            Ok(r) => {
                self.cfg.rejected_pins.insert(&key, &pin);
                return Err(sim_error(format!(
                    "the configured PIN for {label} was rejected ({}); it will not be \
                     tried again automatically",
                    describe_result(&r.result)
                )));
            }
            Err(e) => {
                // No answer: the SIM may have counted the try. Do not risk another.
                self.cfg.rejected_pins.insert(&key, &pin);
                return Err(match e {
                    ModemError::Timeout {
                        payload_sent,
                        resynced,
                        ..
                    } => ModemError::Timeout {
                        command: "AT+CPIN=<pin>".into(),
                        payload_sent,
                        resynced,
                    },
                    e => e,
                });
            }
        }
        // After the PIN the SIM initialises again (`+CPIN: NOT READY`, SIM busy): a new
        // wait starts.
        self.busy_until = Some(self.now() + self.cfg.timeouts.sim_wait);
        let st = self.sim_state().await?;
        self.report.sim = Some(st.clone());
        match st {
            SimState::Ready => Ok(true),
            SimState::Busy => Ok(false),
            st => Err(sim_error(format!(
                "SIM {} after the PIN was accepted",
                st.as_str()
            ))),
        }
    }

    /// The SMSC to give the modem when it has none: configured for this SIM, for any
    /// SIM, the single legacy setting, else the last one the modem reported.
    fn smsc_fallback(&self) -> Option<String> {
        let valid = |s: &&String| {
            !s.contains('"') && Address::parse(s).is_ok_and(|a| a.ton != TypeOfNumber::Alphanumeric)
        };
        let by_sim = [self.report.iccid.as_deref(), self.report.imsi.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|k| self.cfg.smsc_overrides.get(k));
        by_sim
            .or_else(|| self.cfg.smsc_overrides.get("*"))
            .or(self.cfg.smsc.as_ref())
            .filter(valid)
            .cloned()
            .or_else(|| self.smsc_known.clone().filter(|s| valid(&s)))
    }

    /// Reads the SMSC (`AT+CSCA?`); when the modem has none (or forgot it), sets the
    /// fallback, or, if the modem refuses that, has each PDU carry it.
    async fn check_smsc(&mut self) -> Result<(), ModemError> {
        let read = self.query(self.short(Command::csca_query())).await?;
        let current = read
            .as_ref()
            .and_then(|lines| lines.iter().find_map(|l| parse_csca(l)));
        self.smsc = match (read, current) {
            (_, Some(s)) => {
                self.smsc_known = Some(s.clone());
                Smsc::Set(s)
            }
            (read, None) => match self.smsc_fallback() {
                Some(f) => {
                    let toa = if f.starts_with('+') { 145 } else { 129 };
                    let set = Command::new(format!("AT+CSCA=\"{f}\",{toa}"));
                    if read.is_some() && self.query(self.short(set)).await?.is_some() {
                        info!(modem = %self.name(), smsc = %f, "the modem had no SMSC: set");
                        self.smsc_known = Some(f.clone());
                        Smsc::Set(f)
                    } else {
                        info!(modem = %self.name(), smsc = %f, "the modem keeps no SMSC: each PDU carries it");
                        Smsc::InPdu(f)
                    }
                }
                None if read.is_some() => Smsc::Missing,
                None => Smsc::Unreadable,
            },
        };
        self.report.smsc = match &self.smsc {
            Smsc::Set(s) => Some(s.clone()),
            _ => None,
        };
        Ok(())
    }

    /// Before a send: the SMSC is known, read again if it may have been lost. With none
    /// at all, the send fails here with the modem's own words for it (`+CMS ERROR: 330`,
    /// SMSC address unknown), without a doomed `AT+CMGS`.
    pub(super) async fn ensure_smsc(&mut self) -> Result<(), ModemError> {
        if self.smsc == Smsc::Unknown {
            self.check_smsc().await?;
            self.publish();
        }
        if self.smsc == Smsc::Missing {
            warn!(modem = %self.name(), "cannot send: the SIM has no SMSC and none is configured (modems.smsc)");
            return Err(ModemError::Cms {
                command: "AT+CMGS".into(),
                error: CmsError::from_code(CmsError::SMSC_ADDRESS_UNKNOWN),
            });
        }
        Ok(())
    }

    /// A PDU as it goes out: with the SMSC in its SMSC field when the modem keeps none.
    pub(super) fn outgoing_pdu(&self, hex: &str) -> String {
        let Smsc::InPdu(smsc) = &self.smsc else {
            return hex.to_owned();
        };
        let (Some(len), Ok(addr)) = (
            hex.get(..2).and_then(|h| usize::from_str_radix(h, 16).ok()),
            Address::parse(smsc),
        ) else {
            return hex.to_owned();
        };
        let Some(tpdu) = hex.get(2 + 2 * len..) else {
            return hex.to_owned();
        };
        let mut field = Vec::new();
        addr.encode_smsc(&mut field);
        format!("{}{tpdu}", crate::pdu::hex::encode(&field))
    }

    /// Selects the message storage: each configured memory with three, two, then one
    /// `+CPMS` parameters (old Wavecom firmware refuses the three-memory form).
    async fn choose_storage(&mut self) -> Result<(), ModemError> {
        self.storage_ok = false;
        for mem in self.cfg.storages.clone() {
            if !is_storage_name(&mem) {
                warn!(modem = %self.name(), storage = ?mem, "not a storage name (two capitals, e.g. SM): skipped");
                continue;
            }
            for n in (1..=3).rev() {
                let params = vec![format!("\"{mem}\""); n].join(",");
                let cmd = Command::new(format!("AT+CPMS={params}")).with_info("+CPMS:");
                if let Some(lines) = self.query(self.storage_cmd(cmd)).await? {
                    self.mem = mem;
                    self.storage_ok = true;
                    self.report.storage = lines.iter().find_map(|l| Storage::parse(l));
                    return Ok(());
                }
            }
        }
        self.report.storage = None;
        Ok(())
    }

    /// Negotiates `+CNMI`: the configured settings in order; without storage, the same
    /// settings asking for direct delivery come first (`+CMT`, status reports as
    /// `+CDS`), since stored messages could not be read.
    async fn negotiate_cnmi(&mut self) -> Result<(), ModemError> {
        self.report.cnmi = None;
        let mut candidates: Vec<Cnmi> = Vec::new();
        if !self.storage_ok {
            for c in &self.cfg.cnmi {
                let direct = Cnmi {
                    mt: 2,
                    ds: if c.ds == 2 { 1 } else { c.ds },
                    ..*c
                };
                if !candidates.contains(&direct) {
                    candidates.push(direct);
                }
            }
        }
        for c in &self.cfg.cnmi {
            if !candidates.contains(c) {
                candidates.push(*c);
            }
        }
        for c in candidates {
            let cmd = self.short(Command::new(format!("AT+CNMI={}", c.to_param())));
            if self.query(cmd).await?.is_some() {
                self.report.cnmi = Some(c);
                return Ok(());
            }
        }
        // No indications at all: the health poll sweeps instead (if there is storage).
        self.needs_sweep = self.storage_ok;
        Ok(())
    }
}
