//! Input limits, checked at the edge before a command is proposed and again
//! by `apply()`, so a malformed entry that was somehow committed is answered
//! with an error instead of corrupting the state.

use crate::{ClaimError, Command};

/// Limits on what a command may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload, result, error or progress text, in bytes.
    pub max_payload_bytes: usize,
    /// Longest id, type, agent, capability, step or idempotency key.
    pub max_name_len: usize,
    /// Most items one claim may ask for.
    pub max_claim: u32,
    /// Most capabilities or required capabilities per command.
    pub max_capabilities: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1024 * 1024,
            max_name_len: 128,
            max_claim: 1000,
            max_capabilities: 64,
        }
    }
}

impl Limits {
    /// Checks one command (and every command of a batch).
    pub fn check(&self, cmd: &Command) -> Result<(), ClaimError> {
        match cmd {
            Command::Submit(s) => self.submit(s),
            Command::SubmitWith(s, control) => {
                self.submit(s)?;
                if !control.concurrency_key.is_empty() {
                    self.name("concurrency_key", &control.concurrency_key)?;
                }
                Ok(())
            }
            Command::SetLimit(l) => {
                self.name("key", &l.key)?;
                if let Some(rate) = l.rate {
                    if rate.count == 0 || rate.per_ms == 0 {
                        return Err(ClaimError::invalid(
                            "rate",
                            "must be at least 1 per a period longer than 0ms",
                        ));
                    }
                    if rate.burst == 0 {
                        return Err(ClaimError::invalid("burst", "must be at least 1"));
                    }
                }
                if l.max_running == 0 && l.rate.is_none() {
                    return Err(ClaimError::invalid(
                        "limit",
                        "give max_running (at least 1), a rate, or both",
                    ));
                }
                Ok(())
            }
            Command::DeleteLimit(l) => self.name("key", &l.key),
            Command::Retry(r) => self.name("id", &r.id),
            Command::CreateSchedule(c) => {
                let spec = &c.spec;
                self.name("name", &spec.name)?;
                self.name("type", &spec.kind)?;
                self.names("requires", &spec.requires)?;
                self.json("payload", &spec.payload)?;
                if !spec.concurrency_key.is_empty() {
                    self.name("concurrency_key", &spec.concurrency_key)?;
                }
                if spec.cron.is_empty() || spec.cron.len() > self.max_name_len {
                    return Err(ClaimError::invalid("cron", "must be a cron expression"));
                }
                self.text("timezone", &spec.timezone)
            }
            Command::PauseSchedule(p) => self.name("name", &p.name),
            Command::DeleteSchedule(d) => self.name("name", &d.name),
            Command::Pause(p) => {
                self.name("id", &p.id)?;
                self.text("reason", &p.reason)
            }
            Command::Resume(r) => self.name("id", &r.id),
            Command::Signal(s) => {
                self.name("id", &s.id)?;
                self.name("signal", &s.name)?;
                self.json("payload", &s.payload)
            }
            Command::Park(p) => {
                self.name("id", &p.id)?;
                match &p.hold {
                    crate::control::Hold::Paused { reason, .. } => self.text("reason", reason),
                    crate::control::Hold::Signal { name, .. } => self.name("signal", name),
                    crate::control::Hold::Sleep { .. } => Ok(()),
                }
            }
            Command::FireSchedule(f) => {
                self.name("name", &f.name)?;
                self.name("id", &f.item_id)
            }
            Command::Claim(c) => {
                self.name("agent", &c.agent)?;
                self.names("types", &c.kinds)?;
                self.names("capabilities", &c.capabilities)?;
                if c.max == 0 || c.max > self.max_claim {
                    return Err(ClaimError::invalid(
                        "max",
                        format!("must be between 1 and {}, got {}", self.max_claim, c.max),
                    ));
                }
                if c.lease_ms == 0 {
                    return Err(ClaimError::invalid("lease", "must be longer than 0ms"));
                }
                Ok(())
            }
            Command::Renew(r) => {
                self.name("agent", &r.agent)?;
                if let Some(p) = &r.progress {
                    self.text("progress", p)?;
                }
                Ok(())
            }
            Command::StepDone(s) => {
                self.name("id", &s.id)?;
                self.name("step", &s.step)?;
                self.json("outcome", &s.outcome)
            }
            Command::Complete(c) => {
                self.name("id", &c.id)?;
                self.json("result", &c.result)
            }
            Command::Fail(f) => {
                self.name("id", &f.id)?;
                self.text("error", &f.error)
            }
            Command::Release(r) => self.name("id", &r.id),
            Command::Handoff(h) => {
                self.name("id", &h.id)?;
                self.name("to_agent", &h.to_agent)
            }
            Command::Cancel(c) => {
                self.name("id", &c.id)?;
                self.text("reason", &c.reason)
            }
            Command::RegisterNode(r) => {
                self.name("agent", &r.agent)?;
                self.names("capabilities", &r.capabilities)?;
                if r.addr.is_empty() || r.addr.len() > self.max_name_len {
                    return Err(ClaimError::invalid("addr", "must be host:port"));
                }
                Ok(())
            }
            Command::Tick { .. } | Command::LeaderTookOffice { .. } => Ok(()),
            Command::Compact(c) => {
                if c.max == 0 || c.max > crate::MAX_COMPACT_BATCH {
                    return Err(ClaimError::invalid(
                        "max",
                        format!(
                            "must be between 1 and {} items per compaction, got {}",
                            crate::MAX_COMPACT_BATCH,
                            c.max
                        ),
                    ));
                }
                Ok(())
            }
            // Batches do not nest: `apply()` refuses an inner batch, so the
            // edge must too.
            Command::Batch(cmds) => cmds.iter().try_for_each(|c| match c {
                Command::Batch(_) => Err(ClaimError::invalid("batch", "batches do not nest")),
                c => self.check(c),
            }),
        }
    }

    fn submit(&self, s: &crate::command::Submit) -> Result<(), ClaimError> {
        self.name("id", &s.id)?;
        self.name("type", &s.kind)?;
        if !s.idempotency_key.is_empty() {
            self.name("idempotency_key", &s.idempotency_key)?;
        }
        self.names("requires", &s.requires)?;
        self.json("payload", &s.payload)
    }

    /// Names: ids, types, agents, capabilities, steps. Non-empty, bounded,
    /// and made of letters, digits and `-_.:/@`, so they print and match
    /// without surprises.
    pub fn name(&self, field: &str, value: &str) -> Result<(), ClaimError> {
        if value.is_empty() {
            return Err(ClaimError::invalid(field, "must not be empty"));
        }
        if value.len() > self.max_name_len {
            return Err(ClaimError::invalid(
                field,
                format!(
                    "{} bytes is over the limit of {} bytes",
                    value.len(),
                    self.max_name_len
                ),
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.:/@".contains(*c)))
        {
            return Err(ClaimError::invalid(
                field,
                format!("{value:?} contains {bad:?}: use letters, digits and - _ . : / @"),
            ));
        }
        Ok(())
    }

    fn names(&self, field: &str, values: &[String]) -> Result<(), ClaimError> {
        if values.len() > self.max_capabilities {
            return Err(ClaimError::invalid(
                field,
                format!(
                    "{} entries is over the limit of {}",
                    values.len(),
                    self.max_capabilities
                ),
            ));
        }
        values.iter().try_for_each(|v| self.name(field, v))
    }

    fn text(&self, field: &str, value: &str) -> Result<(), ClaimError> {
        if value.len() > self.max_payload_bytes {
            return Err(ClaimError::invalid(
                field,
                format!(
                    "{} bytes is over the limit of {} bytes",
                    value.len(),
                    self.max_payload_bytes
                ),
            ));
        }
        Ok(())
    }

    fn json(&self, field: &str, value: &str) -> Result<(), ClaimError> {
        self.text(field, value)?;
        serde_json::from_str::<serde::de::IgnoredAny>(value)
            .map_err(|e| ClaimError::invalid(field, format!("not valid JSON: {e}")))?;
        Ok(())
    }
}
