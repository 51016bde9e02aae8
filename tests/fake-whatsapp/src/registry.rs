//! Server-side truth of the fake: the open pages (one per browser tab that loaded the app), their
//! WhatsApp state machine, and the linked devices the "phones" know about.
//!
//! Everything is driven by explicit `now` values so the rules can be unit-tested without sleeping;
//! the HTTP layer calls [`Registry::tick`] when the earliest deadline passes.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use jiff::Timestamp;
use rand::Rng as _;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

use crate::config::Timings;
use crate::messages::{MessageError, Messages, PageMessage, Record, Via};

/// The `WAState` values of `window.require('WAWebSocketModel').Socket.state` the fake produces
/// (whatsapp-web.js src/util/Constants.js `WAState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum WaState {
    #[serde(rename = "OPENING")]
    Opening,
    #[serde(rename = "UNPAIRED")]
    Unpaired,
    #[serde(rename = "UNPAIRED_IDLE")]
    UnpairedIdle,
    #[serde(rename = "PAIRING")]
    Pairing,
    #[serde(rename = "CONNECTED")]
    Connected,
    #[serde(rename = "CONFLICT")]
    Conflict,
}

/// The fourth/fifth QR parts: what the real page reads from its registration and signal stores.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QrKeys {
    pub noise_pub_key: String,
    pub identity_pub_key: String,
    pub adv_secret_key: String,
    pub platform: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// OPENING ends: restore the login or show the first QR.
    OpeningDone,
    /// The current QR expires.
    QrExpires,
    /// PAIRING ends: CONNECTED.
    PairingDone,
    /// CONNECTED: `hasSynced` becomes true.
    Synced,
}

#[derive(Clone, Debug)]
struct PairingCode {
    code: String,
    phone: String,
}

pub struct Page {
    pub id: String,
    keys: QrKeys,
    state: WaState,
    has_synced: bool,
    current_ref: Option<String>,
    ref_expires_at: Option<Instant>,
    refs_in_round: u32,
    /// Credential of the linked device this page holds (also the key into `devices`).
    device: Option<String>,
    timer: Option<(Instant, Timer)>,
    version: u64,
    /// One-shot `Cmd` events for the page, tagged with the version that introduced them.
    events: Vec<(u64, &'static str)>,
    /// Messages and acks for the page, tagged likewise.
    messages: Vec<(u64, PageMessage)>,
    navigate: Option<String>,
    hang: bool,
    /// Test hook: the last bounded busy spell asked for (`/_fake/hang {ms}`): its number (the
    /// page runs each number once) and length.
    busy: (u64, u64),
    crash: bool,
    /// Test hook: MiB the page script keeps allocated (`/_fake/bloat`).
    bloat_mb: u32,
    pairing: Option<PairingCode>,
    last_poll: Instant,
    polls_in_flight: u32,
    closed: bool,
    tx: watch::Sender<u64>,
}

impl Page {
    fn qr(&self) -> Option<String> {
        self.current_ref.as_ref().map(|r| {
            format!(
                "{r},{},{},{},{}",
                self.keys.noise_pub_key,
                self.keys.identity_pub_key,
                self.keys.adv_secret_key,
                self.keys.platform
            )
        })
    }

    fn alive(&self, now: Instant) -> bool {
        // A page that polls keeps one request open nearly all the time; a gap of a few seconds
        // means the tab is gone, hung or crashed.
        !self.closed
            && (self.polls_in_flight > 0
                || now.saturating_duration_since(self.last_poll) < Duration::from_secs(3))
    }

    fn bump(&mut self) {
        self.version += 1;
        // Receivers may all be gone (no poll in flight): the version is read on the next poll.
        let _ = self.tx.send(self.version);
    }
}

#[derive(Clone, Debug)]
struct Device {
    phone: String,
    push_name: String,
    linked_at: Timestamp,
    last_seen: Timestamp,
}

/// What a page learns on each poll (JSON to the page script).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub v: u64,
    pub state: WaState,
    #[serde(rename = "ref")]
    pub current_ref: Option<String>,
    pub qr: Option<String>,
    pub has_synced: bool,
    pub keys: QrKeys,
    pub me: Option<Me>,
    /// The device credential the profile must hold; `None` means wipe it.
    pub credential: Option<String>,
    pub events: Vec<&'static str>,
    /// Messages and acks since the page's last poll (see `messages.rs`).
    pub messages: Vec<PageMessage>,
    pub navigate: Option<String>,
    pub hang: bool,
    /// A busy spell the page runs once (its main thread spins `busy_ms`, then goes on): the
    /// page runs each `busy_seq` once.
    pub busy_seq: u64,
    pub busy_ms: u64,
    pub crash: bool,
    /// MiB the page must hold allocated (ArrayBuffers, outside the V8 heap limit).
    pub bloat_mb: u32,
    pub pairing_code: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub phone: String,
    pub push_name: String,
}

/// `GET /_fake/pages` rows.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    pub id: String,
    pub state: WaState,
    #[serde(rename = "ref")]
    pub current_ref: Option<String>,
    pub qr: Option<String>,
    pub qr_index: u32,
    pub has_synced: bool,
    pub phone: Option<String>,
    pub pairing_code: Option<String>,
    pub alive: bool,
}

/// `GET /_fake/devices` rows.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub phone: String,
    pub push_name: String,
    pub linked_at: Timestamp,
    pub last_seen: Timestamp,
    pub connected: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("no page shows that QR or code")]
    NotFound,
    #[error("that QR or code has expired")]
    Expired,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    #[error("unknown page")]
    UnknownPage,
    #[error("not possible in state {0:?}")]
    WrongState(WaState),
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// Actions the page script asks for (its modules' methods).
#[derive(Clone, Debug)]
pub enum PageAction {
    RefreshQr,
    Logout,
    Takeover,
    /// `startAltLinkingFlow(phone)`: returns an 8-character pairing code.
    AltLinking {
        phone: String,
    },
}

/// Which pages a test hook applies to; all empty = every live page.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageSelector {
    pub page: Option<String>,
    #[serde(rename = "ref")]
    pub current_ref: Option<String>,
    pub phone: Option<String>,
}

pub struct Registry {
    timings: Timings,
    pages: HashMap<String, Page>,
    devices: HashMap<String, Device>,
    /// Refs that were shown and are no longer valid (scan → 410 rather than 404).
    retired_refs: HashSet<String>,
    messages: Messages,
}

const POST_LOGOUT_URL: &str = "/?post_logout=1";

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    B64.encode(buf)
}

/// Real refs look like `2@<base64>`; never contain a comma (the QR separator).
fn new_ref() -> String {
    format!("2@{}", random_b64(36))
}

fn pairing_code() -> String {
    // Real codes are 8 characters of upper-case letters and digits, shown as XXXX-XXXX.
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTVWXYZ123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Digits only, as WhatsApp ids use them (`5491122334455@c.us`).
pub fn normalize_phone(phone: &str) -> Result<String, String> {
    let digits: String = phone
        .chars()
        .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')'))
        .collect();
    if digits.len() < 6 || digits.len() > 15 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "phone {phone:?} is not an international number (6-15 digits)"
        ));
    }
    Ok(digits)
}

impl Registry {
    pub fn new(timings: Timings) -> Self {
        Self {
            timings,
            pages: HashMap::new(),
            devices: HashMap::new(),
            retired_refs: HashSet::new(),
            messages: Messages::default(),
        }
    }

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// A page loaded the app. `credential` is what its profile holds (if anything).
    pub fn open_page(&mut self, credential: Option<String>, now: Instant) -> String {
        let id = random_token(12);
        // A credential the server does not know (unlinked meanwhile, or from another fake) is
        // dropped: the snapshot then tells the page to wipe it.
        let device = credential.filter(|c| self.devices.contains_key(c));
        let (tx, _) = watch::channel(0);
        let page = Page {
            id: id.clone(),
            keys: QrKeys {
                noise_pub_key: random_b64(32),
                identity_pub_key: random_b64(32),
                adv_secret_key: random_b64(32),
                platform: "CHROME".into(),
            },
            state: WaState::Opening,
            has_synced: false,
            current_ref: None,
            ref_expires_at: None,
            refs_in_round: 0,
            device,
            timer: Some((now + self.timings.opening, Timer::OpeningDone)),
            version: 1,
            events: Vec::new(),
            messages: Vec::new(),
            navigate: None,
            hang: false,
            busy: (0, 0),
            crash: false,
            bloat_mb: 0,
            pairing: None,
            last_poll: now,
            polls_in_flight: 0,
            closed: false,
            tx,
        };
        self.pages.insert(id.clone(), page);
        id
    }

    pub fn close_page(&mut self, id: &str) {
        if let Some(page) = self.pages.get_mut(id) {
            page.closed = true;
        }
    }

    pub fn subscribe(&self, id: &str) -> Result<watch::Receiver<u64>, PageError> {
        self.pages
            .get(id)
            .map(|p| p.tx.subscribe())
            .ok_or(PageError::UnknownPage)
    }

    pub fn poll_started(&mut self, id: &str, now: Instant) -> Result<u64, PageError> {
        let page = self.pages.get_mut(id).ok_or(PageError::UnknownPage)?;
        page.polls_in_flight += 1;
        page.last_poll = now;
        let version = page.version;
        if let Some(device) = page.device.as_ref().and_then(|d| self.devices.get_mut(d)) {
            device.last_seen = Timestamp::now();
        }
        Ok(version)
    }

    pub fn poll_finished(&mut self, id: &str, now: Instant) {
        if let Some(page) = self.pages.get_mut(id) {
            page.polls_in_flight = page.polls_in_flight.saturating_sub(1);
            page.last_poll = now;
        }
    }

    pub fn snapshot(&self, id: &str, since: u64) -> Result<Snapshot, PageError> {
        let page = self.pages.get(id).ok_or(PageError::UnknownPage)?;
        let device = page.device.as_ref().and_then(|d| self.devices.get(d));
        let me = match page.state {
            WaState::Connected | WaState::Conflict | WaState::Pairing => device.map(|d| Me {
                phone: d.phone.clone(),
                push_name: d.push_name.clone(),
            }),
            _ => None,
        };
        Ok(Snapshot {
            v: page.version,
            state: page.state,
            current_ref: page.current_ref.clone(),
            qr: page.qr(),
            has_synced: page.has_synced,
            keys: page.keys.clone(),
            me,
            credential: page.device.clone(),
            events: page
                .events
                .iter()
                .filter(|(v, _)| *v > since)
                .map(|(_, e)| *e)
                .collect(),
            messages: page
                .messages
                .iter()
                .filter(|(v, _)| *v > since)
                .map(|(_, m)| m.clone())
                .collect(),
            navigate: page.navigate.clone(),
            hang: page.hang,
            busy_seq: page.busy.0,
            busy_ms: page.busy.1,
            crash: page.crash,
            bloat_mb: page.bloat_mb,
            pairing_code: page.pairing.as_ref().map(|p| p.code.clone()),
        })
    }

    fn start_round(&mut self, id: &str, now: Instant) {
        let timings = self.timings.clone();
        let Some(page) = self.pages.get_mut(id) else {
            return;
        };
        if let Some(old) = page.current_ref.take() {
            self.retired_refs.insert(old);
        }
        page.state = WaState::Unpaired;
        page.has_synced = false;
        page.refs_in_round = 1;
        page.current_ref = Some(new_ref());
        page.ref_expires_at = Some(now + timings.first_qr);
        page.timer = Some((now + timings.first_qr, Timer::QrExpires));
        page.bump();
    }

    /// Fires every due timer; returns the next deadline (if any page has one).
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        let due: Vec<(String, Timer)> = self
            .pages
            .values()
            .filter_map(|p| {
                p.timer
                    .filter(|(at, _)| *at <= now)
                    .map(|(_, t)| (p.id.clone(), t))
            })
            .collect();
        for (id, timer) in due {
            self.fire(&id, timer, now);
        }
        self.collect_garbage(now);
        self.pages
            .values()
            .filter_map(|p| p.timer.map(|(at, _)| at))
            .min()
    }

    fn fire(&mut self, id: &str, timer: Timer, now: Instant) {
        let timings = self.timings.clone();
        let devices_known = {
            let Some(page) = self.pages.get_mut(id) else {
                return;
            };
            page.timer = None;
            page.device.as_ref().map(|d| self.devices.contains_key(d))
        };
        match timer {
            Timer::OpeningDone => match devices_known {
                Some(true) => self.connect(id, now),
                _ => {
                    if let Some(page) = self.pages.get_mut(id) {
                        page.device = None;
                    }
                    self.start_round(id, now);
                }
            },
            Timer::QrExpires => {
                let Some(page) = self.pages.get_mut(id) else {
                    return;
                };
                if page.state != WaState::Unpaired {
                    return;
                }
                if let Some(old) = page.current_ref.take() {
                    self.retired_refs.insert(old.clone());
                    // The last ref stays readable (as on the real page) but no longer scans.
                    page.current_ref = Some(old);
                }
                if page.refs_in_round < timings.max_qrs {
                    page.refs_in_round += 1;
                    page.current_ref = Some(new_ref());
                    page.ref_expires_at = Some(now + timings.next_qr);
                    page.timer = Some((now + timings.next_qr, Timer::QrExpires));
                } else {
                    page.state = WaState::UnpairedIdle;
                    page.ref_expires_at = None;
                }
                page.bump();
            }
            Timer::PairingDone => {
                if self
                    .pages
                    .get(id)
                    .is_some_and(|p| p.state == WaState::Pairing)
                {
                    self.connect(id, now);
                }
            }
            Timer::Synced => {
                let Some(page) = self.pages.get_mut(id) else {
                    return;
                };
                if page.state == WaState::Connected && !page.has_synced {
                    page.has_synced = true;
                    page.bump();
                }
            }
        }
    }

    /// The page becomes CONNECTED; any other live page on the same device goes CONFLICT, as when
    /// WhatsApp Web is opened in a second window.
    fn connect(&mut self, id: &str, now: Instant) {
        let sync = self.timings.sync;
        let Some(page) = self.pages.get_mut(id) else {
            return;
        };
        let Some(device) = page.device.clone() else {
            return;
        };
        if let Some(old) = page.current_ref.take() {
            self.retired_refs.insert(old);
        }
        page.ref_expires_at = None;
        page.pairing = None;
        page.state = WaState::Connected;
        if !page.has_synced {
            page.timer = Some((now + sync, Timer::Synced));
        }
        // The chats' history, as the real page loads it from its store (`isNewMsg` false).
        let account = self.devices.get(&device).map(|d| d.phone.clone());
        for record in account
            .map(|a| self.messages.history(&a))
            .unwrap_or_default()
        {
            page.messages.push((
                page.version + 1,
                PageMessage::Msg {
                    record,
                    is_new: false,
                },
            ));
        }
        page.bump();
        for other in self.pages.values_mut() {
            if other.id != id
                && other.device.as_deref() == Some(&device)
                && other.state == WaState::Connected
            {
                other.state = WaState::Conflict;
                other.bump();
            }
        }
    }

    /// Log a page out: the `Cmd` event, UNPAIRED, the credential wiped, and the navigation to
    /// `/?post_logout=1` the real page performs (whatsapp-web.js waits for it).
    fn log_page_out(page: &mut Page, event: &'static str) {
        page.device = None;
        page.state = WaState::Unpaired;
        page.has_synced = false;
        page.timer = None;
        page.current_ref = None;
        page.ref_expires_at = None;
        page.navigate = Some(POST_LOGOUT_URL.into());
        page.events.push((page.version + 1, event));
        page.bump();
    }

    fn forget_device(&mut self, token: &str, except_page: Option<&str>, event: &'static str) {
        self.devices.remove(token);
        for page in self.pages.values_mut() {
            if page.device.as_deref() == Some(token) && Some(page.id.as_str()) != except_page {
                Self::log_page_out(page, event);
            }
        }
    }

    pub fn page_action(
        &mut self,
        id: &str,
        action: PageAction,
        now: Instant,
    ) -> Result<Option<String>, PageError> {
        let page = self.pages.get_mut(id).ok_or(PageError::UnknownPage)?;
        match action {
            PageAction::RefreshQr => match page.state {
                WaState::Unpaired | WaState::UnpairedIdle => {
                    self.start_round(id, now);
                    Ok(None)
                }
                other => Err(PageError::WrongState(other)),
            },
            PageAction::Logout => {
                if let Some(token) = page.device.clone() {
                    self.forget_device(&token, Some(id), "logout_from_bridge");
                }
                if let Some(page) = self.pages.get_mut(id) {
                    Self::log_page_out(page, "logout");
                }
                Ok(None)
            }
            PageAction::Takeover => match page.state {
                WaState::Conflict => {
                    if page
                        .device
                        .as_ref()
                        .is_some_and(|d| self.devices.contains_key(d))
                    {
                        self.connect(id, now);
                    } else {
                        Self::log_page_out(page, "logout_from_bridge");
                    }
                    Ok(None)
                }
                other => Err(PageError::WrongState(other)),
            },
            PageAction::AltLinking { phone } => match page.state {
                WaState::Unpaired | WaState::UnpairedIdle => {
                    let phone = normalize_phone(&phone).map_err(PageError::BadRequest)?;
                    let code = pairing_code();
                    page.pairing = Some(PairingCode {
                        code: code.clone(),
                        phone,
                    });
                    page.bump();
                    Ok(Some(code))
                }
                other => Err(PageError::WrongState(other)),
            },
        }
    }

    fn link(&mut self, id: &str, phone: String, push_name: String, now: Instant) {
        let token = random_token(24);
        let at = Timestamp::now();
        self.devices.insert(
            token.clone(),
            Device {
                phone,
                push_name,
                linked_at: at,
                last_seen: at,
            },
        );
        let pairing = self.timings.pairing;
        if let Some(page) = self.pages.get_mut(id) {
            if let Some(old) = page.current_ref.take() {
                self.retired_refs.insert(old);
            }
            page.device = Some(token);
            page.state = WaState::Pairing;
            page.pairing = None;
            page.ref_expires_at = None;
            page.timer = Some((now + pairing, Timer::PairingDone));
            page.bump();
        }
    }

    /// The phone scans `qr` (as shown; its first comma-separated part is the ref).
    pub fn scan(
        &mut self,
        qr: &str,
        phone: &str,
        push_name: Option<String>,
        now: Instant,
    ) -> Result<String, LinkError> {
        let phone = normalize_phone(phone).map_err(LinkError::BadRequest)?;
        let scanned_ref = qr.split(',').next().unwrap_or_default().trim();
        if scanned_ref.is_empty() {
            return Err(LinkError::BadRequest("qr is empty".into()));
        }
        let Some(page) = self
            .pages
            .values()
            .find(|p| p.current_ref.as_deref() == Some(scanned_ref))
        else {
            return Err(if self.retired_refs.contains(scanned_ref) {
                LinkError::Expired
            } else {
                LinkError::NotFound
            });
        };
        let valid = page.state == WaState::Unpaired
            && page.alive(now)
            && page.ref_expires_at.is_some_and(|at| at > now)
            && !self.retired_refs.contains(scanned_ref);
        if !valid {
            return Err(LinkError::Expired);
        }
        // A full QR string must match the keys too, as the phone verifies them.
        if qr.contains(',') && page.qr().as_deref() != Some(qr.trim()) {
            return Err(LinkError::NotFound);
        }
        let id = page.id.clone();
        let push_name = push_name.unwrap_or_else(|| format!("Fake {phone}"));
        self.link(&id, phone, push_name, now);
        Ok(id)
    }

    /// The phone enters a pairing code shown by a page.
    pub fn pair_with_code(
        &mut self,
        code: &str,
        push_name: Option<String>,
        now: Instant,
    ) -> Result<String, LinkError> {
        let code: String = code
            .chars()
            .filter(|c| *c != '-')
            .collect::<String>()
            .to_uppercase();
        let Some(page) = self
            .pages
            .values()
            .find(|p| p.pairing.as_ref().is_some_and(|pc| pc.code == code))
        else {
            return Err(LinkError::NotFound);
        };
        if !matches!(page.state, WaState::Unpaired | WaState::UnpairedIdle) || !page.alive(now) {
            return Err(LinkError::Expired);
        }
        let id = page.id.clone();
        let phone = page
            .pairing
            .as_ref()
            .map(|p| p.phone.clone())
            .unwrap_or_default();
        let push_name = push_name.unwrap_or_else(|| format!("Fake {phone}"));
        self.link(&id, phone, push_name, now);
        Ok(id)
    }

    /// The phone removes its linked devices; returns how many were removed.
    pub fn unlink(&mut self, phone: &str) -> Result<usize, LinkError> {
        let phone = normalize_phone(phone).map_err(LinkError::BadRequest)?;
        let tokens: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.phone == phone)
            .map(|(t, _)| t.clone())
            .collect();
        for token in &tokens {
            self.forget_device(token, None, "logout_from_bridge");
        }
        Ok(tokens.len())
    }

    /// The account is opened elsewhere: every connected page of `phone` goes CONFLICT.
    pub fn conflict(&mut self, phone: &str) -> Result<usize, LinkError> {
        let phone = normalize_phone(phone).map_err(LinkError::BadRequest)?;
        let tokens: HashSet<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.phone == phone)
            .map(|(t, _)| t.clone())
            .collect();
        let mut n = 0;
        for page in self.pages.values_mut() {
            if page.state == WaState::Connected
                && page.device.as_ref().is_some_and(|d| tokens.contains(d))
            {
                page.state = WaState::Conflict;
                page.bump();
                n += 1;
            }
        }
        Ok(n)
    }

    fn selected(&self, sel: &PageSelector, now: Instant) -> Vec<String> {
        let phone = sel.phone.as_deref().and_then(|p| normalize_phone(p).ok());
        self.pages
            .values()
            .filter(|p| p.alive(now))
            .filter(|p| sel.page.as_ref().is_none_or(|id| &p.id == id))
            .filter(|p| {
                sel.current_ref
                    .as_ref()
                    .is_none_or(|r| p.current_ref.as_ref() == Some(r))
            })
            .filter(|p| {
                phone.as_ref().is_none_or(|ph| {
                    p.device
                        .as_ref()
                        .and_then(|d| self.devices.get(d))
                        .is_some_and(|d| &d.phone == ph)
                })
            })
            .map(|p| p.id.clone())
            .collect()
    }

    /// Test hook: the selected pages stop responding (a busy loop in their script), for good
    /// or, with `busy`, for that long (a page busy with real work, as WhatsApp Web is while it
    /// boots or decrypts its history).
    pub fn hang(&mut self, sel: &PageSelector, busy: Option<Duration>, now: Instant) -> usize {
        let ids = self.selected(sel, now);
        for id in &ids {
            if let Some(p) = self.pages.get_mut(id) {
                match busy {
                    None => p.hang = true,
                    Some(d) => p.busy = (p.busy.0 + 1, d.as_millis() as u64),
                }
                p.bump();
            }
        }
        ids.len()
    }

    /// Test hook: the selected pages' renderer crashes.
    pub fn crash(&mut self, sel: &PageSelector, now: Instant) -> usize {
        let ids = self.selected(sel, now);
        for id in &ids {
            if let Some(p) = self.pages.get_mut(id) {
                p.crash = true;
                p.bump();
            }
        }
        ids.len()
    }

    /// Test hook: the selected pages allocate until they hold `mb` MiB (never less than before).
    pub fn bloat(&mut self, sel: &PageSelector, mb: u32, now: Instant) -> usize {
        let ids = self.selected(sel, now);
        for id in &ids {
            if let Some(p) = self.pages.get_mut(id) {
                p.bloat_mb = p.bloat_mb.max(mb);
                p.bump();
            }
        }
        ids.len()
    }

    pub fn pages(&self, now: Instant) -> Vec<PageInfo> {
        let mut out: Vec<PageInfo> = self
            .pages
            .values()
            .filter(|p| !p.closed)
            .map(|p| PageInfo {
                id: p.id.clone(),
                state: p.state,
                current_ref: p.current_ref.clone(),
                qr: p.qr(),
                qr_index: p.refs_in_round,
                has_synced: p.has_synced,
                phone: p
                    .device
                    .as_ref()
                    .and_then(|d| self.devices.get(d))
                    .map(|d| d.phone.clone()),
                pairing_code: p.pairing.as_ref().map(|pc| pc.code.clone()),
                alive: p.alive(now),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn devices(&self, now: Instant) -> Vec<DeviceInfo> {
        let mut out: Vec<DeviceInfo> = self
            .devices
            .iter()
            .map(|(token, d)| DeviceInfo {
                phone: d.phone.clone(),
                push_name: d.push_name.clone(),
                linked_at: d.linked_at,
                last_seen: d.last_seen,
                connected: self.pages.values().any(|p| {
                    p.device.as_deref() == Some(token.as_str())
                        && p.state == WaState::Connected
                        && p.alive(now)
                }),
            })
            .collect();
        out.sort_by(|a, b| (&a.phone, a.linked_at).cmp(&(&b.phone, b.linked_at)));
        out
    }

    /// Forget pages that have been gone for a minute (their refs stay retired).
    fn collect_garbage(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .pages
            .values()
            .filter(|p| {
                p.closed
                    || (!p.alive(now)
                        && now.saturating_duration_since(p.last_poll) > Duration::from_secs(60))
            })
            .map(|p| p.id.clone())
            .collect();
        for id in gone {
            if let Some(mut page) = self.pages.remove(&id)
                && let Some(r) = page.current_ref.take()
            {
                self.retired_refs.insert(r);
            }
        }
    }
}

/// Messages: what the control API (phone, contacts) and the page (sends, number checks) ask.
impl Registry {
    /// The account (phone) of a connected page.
    fn connected_account(&self, page: &str) -> Result<String, PageError> {
        let p = self.pages.get(page).ok_or(PageError::UnknownPage)?;
        if p.state != WaState::Connected {
            return Err(PageError::WrongState(p.state));
        }
        p.device
            .as_ref()
            .and_then(|d| self.devices.get(d))
            .map(|d| d.phone.clone())
            .ok_or(PageError::WrongState(p.state))
    }

    /// Tells every connected page of `account` (but `except`) about a message or an ack.
    fn tell_account(&mut self, account: &str, except: Option<&str>, message: PageMessage) -> usize {
        let mut n = 0;
        for page in self.pages.values_mut() {
            let of_account = page
                .device
                .as_ref()
                .and_then(|d| self.devices.get(d))
                .is_some_and(|d| d.phone == account);
            if of_account && page.state == WaState::Connected && Some(page.id.as_str()) != except {
                page.messages.push((page.version + 1, message.clone()));
                page.bump();
                n += 1;
            }
        }
        n
    }

    fn has_account(&self, phone: &str) -> bool {
        self.devices.values().any(|d| d.phone == phone)
    }

    /// Declares numbers that exist on WhatsApp; returns how many were new.
    pub fn declare_numbers(&mut self, phones: &[String]) -> Result<usize, LinkError> {
        let phones = phones
            .iter()
            .map(|p| normalize_phone(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(LinkError::BadRequest)?;
        Ok(self.messages.declare(phones))
    }

    pub fn numbers(&self) -> Vec<String> {
        self.messages.numbers()
    }

    /// `WAWebQueryExistsJob.queryWidExists`: whether `phone` is on WhatsApp (declared, or an
    /// account with a linked device). Only a connected page can ask.
    pub fn number_exists(&self, page: &str, phone: &str) -> Result<bool, PageError> {
        self.connected_account(page)?;
        let Ok(phone) = normalize_phone(phone) else {
            return Ok(false);
        };
        Ok(self.messages.is_declared(&phone) || self.has_account(&phone))
    }

    /// A page sends a text (`addAndSendMsgToChat`): recorded, acknowledged by the server
    /// (ack 1), and shown on the account's other pages as their own outgoing message. Every
    /// send is recorded, a repeated id included: the record shows what the page sent.
    pub fn page_send(
        &mut self,
        page: &str,
        id: String,
        chat: &str,
        body: String,
    ) -> Result<Record, PageError> {
        let account = self.connected_account(page)?;
        let record = self
            .messages
            .record(
                &account,
                chat,
                id,
                body,
                true,
                Via::Page,
                Some(page.to_string()),
            )
            .map_err(|e| PageError::BadRequest(e.to_string()))?;
        self.tell_account(
            &account,
            Some(page),
            PageMessage::Msg {
                record: record.clone(),
                is_new: true,
            },
        );
        Ok(record)
    }

    /// A contact `from` writes to `account` (`incoming`), or the account's phone writes to
    /// `from` (`!incoming`). Returns the record and how many pages were told.
    pub fn phone_message(
        &mut self,
        account: &str,
        other: &str,
        body: String,
        incoming: bool,
    ) -> Result<(Record, usize), LinkError> {
        let account = normalize_phone(account).map_err(LinkError::BadRequest)?;
        let other = normalize_phone(other).map_err(LinkError::BadRequest)?;
        if !self.has_account(&account) {
            return Err(LinkError::NotFound);
        }
        let via = if incoming { Via::Contact } else { Via::Phone };
        let record = self
            .messages
            .record(
                &account,
                &other,
                crate::messages::phone_message_id(),
                body,
                !incoming,
                via,
                None,
            )
            .map_err(|e| LinkError::BadRequest(e.to_string()))?;
        // Whoever writes is on WhatsApp.
        self.messages.declare([other]);
        let told = self.tell_account(
            &account,
            None,
            PageMessage::Msg {
                record: record.clone(),
                is_new: true,
            },
        );
        Ok((record, told))
    }

    /// The recipient's phone acknowledges a message the account sent (2 delivered, 3 read).
    pub fn ack_message(&mut self, id: &str, ack: i8) -> Result<(Record, usize), MessageError> {
        let record = self.messages.ack(id, ack)?;
        let told = self.tell_account(
            &record.account.clone(),
            None,
            PageMessage::Ack {
                key: record.key.clone(),
                ack,
            },
        );
        Ok((record, told))
    }

    pub fn messages(&self, account: Option<&str>) -> Vec<Record> {
        self.messages.list(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (Registry, Instant) {
        let t = Timings {
            first_qr: Duration::from_secs(60),
            next_qr: Duration::from_secs(20),
            max_qrs: 3,
            opening: Duration::from_millis(100),
            pairing: Duration::from_millis(100),
            sync: Duration::from_millis(100),
            poll_hold: Duration::from_secs(10),
        };
        (Registry::new(t), Instant::now())
    }

    fn keep_alive(r: &mut Registry, id: &str, now: Instant) {
        r.poll_started(id, now).unwrap();
        r.poll_finished(id, now);
    }

    #[test]
    fn qr_round_rotates_then_idles_and_refresh_restarts() {
        let (mut r, t0) = registry();
        let id = r.open_page(None, t0);
        assert_eq!(r.snapshot(&id, 0).unwrap().state, WaState::Opening);
        let t = t0 + Duration::from_millis(100);
        assert_eq!(r.tick(t), Some(t + Duration::from_secs(60)));
        let s = r.snapshot(&id, 0).unwrap();
        assert_eq!(s.state, WaState::Unpaired);
        let first = s.current_ref.unwrap();
        assert!(s.qr.unwrap().starts_with(&format!("{first},")));
        let t = t + Duration::from_secs(60);
        keep_alive(&mut r, &id, t);
        r.tick(t);
        let second = r.snapshot(&id, 0).unwrap().current_ref.unwrap();
        assert_ne!(first, second);
        let t = t + Duration::from_secs(20);
        keep_alive(&mut r, &id, t);
        r.tick(t);
        let t = t + Duration::from_secs(20);
        keep_alive(&mut r, &id, t);
        assert_eq!(r.tick(t), None);
        assert_eq!(r.snapshot(&id, 0).unwrap().state, WaState::UnpairedIdle);
        keep_alive(&mut r, &id, t);
        assert_eq!(
            r.scan(&second, "5491100000000", None, t),
            Err(LinkError::Expired)
        );
        r.page_action(&id, PageAction::RefreshQr, t).unwrap();
        let s = r.snapshot(&id, 0).unwrap();
        assert_eq!(s.state, WaState::Unpaired);
        assert_eq!(r.pages(t)[0].qr_index, 1);
    }

    #[test]
    fn bloat_reaches_the_selected_pages_and_never_shrinks() {
        let (mut r, t0) = registry();
        let a = r.open_page(None, t0);
        let b = r.open_page(None, t0);
        keep_alive(&mut r, &a, t0);
        keep_alive(&mut r, &b, t0);
        let v = r.snapshot(&a, 0).unwrap().v;
        let only_a = PageSelector {
            page: Some(a.clone()),
            ..Default::default()
        };
        assert_eq!(r.bloat(&only_a, 300, t0), 1);
        let s = r.snapshot(&a, 0).unwrap();
        assert_eq!(
            (s.bloat_mb, s.v > v),
            (300, true),
            "a new version, so the page applies it"
        );
        assert_eq!(r.snapshot(&b, 0).unwrap().bloat_mb, 0);
        assert_eq!(r.bloat(&only_a, 100, t0), 1);
        assert_eq!(r.snapshot(&a, 0).unwrap().bloat_mb, 300);
        assert_eq!(r.bloat(&PageSelector::default(), 50, t0), 2);
        assert_eq!(r.snapshot(&b, 0).unwrap().bloat_mb, 50);
    }

    #[test]
    fn scan_links_and_restore_skips_the_qr() {
        let (mut r, t0) = registry();
        let id = r.open_page(None, t0);
        let t = t0 + Duration::from_millis(100);
        r.tick(t);
        keep_alive(&mut r, &id, t);
        let qr = r.snapshot(&id, 0).unwrap().qr.unwrap();
        assert_eq!(
            r.scan("2@nope", "+54 9 11 0000-0000", None, t),
            Err(LinkError::NotFound)
        );
        let tampered = format!("{},x,y,z,w", qr.split(',').next().unwrap());
        assert_eq!(
            r.scan(&tampered, "5491100000000", None, t),
            Err(LinkError::NotFound)
        );
        r.scan(&qr, "+54 9 11 0000-0000", Some("Ana".into()), t)
            .unwrap();
        assert_eq!(r.snapshot(&id, 0).unwrap().state, WaState::Pairing);
        let t = t + Duration::from_millis(100);
        r.tick(t);
        let s = r.snapshot(&id, 0).unwrap();
        assert_eq!(s.state, WaState::Connected);
        assert_eq!(s.me.as_ref().unwrap().phone, "5491100000000");
        assert!(!s.has_synced);
        let t = t + Duration::from_millis(100);
        r.tick(t);
        keep_alive(&mut r, &id, t);
        assert!(r.snapshot(&id, 0).unwrap().has_synced);
        assert!(r.devices(t)[0].connected);
        // Same QR again: used.
        assert_eq!(
            r.scan(&qr, "5491100000000", None, t),
            Err(LinkError::Expired)
        );

        // A reload: the new page presents the credential and comes back CONNECTED without a QR.
        let cred = r.snapshot(&id, 0).unwrap().credential.unwrap();
        r.close_page(&id);
        let id2 = r.open_page(Some(cred), t);
        let t = t + Duration::from_millis(100);
        r.tick(t);
        let s = r.snapshot(&id2, 0).unwrap();
        assert_eq!(s.state, WaState::Connected);
        assert!(s.qr.is_none());

        // Unlink from the phone: logout event, credential wiped, navigation to post_logout.
        let v = s.v;
        assert_eq!(r.unlink("5491100000000"), Ok(1));
        let s = r.snapshot(&id2, v).unwrap();
        assert_eq!(s.state, WaState::Unpaired);
        assert_eq!(s.events, vec!["logout_from_bridge"]);
        assert!(s.credential.is_none());
        assert_eq!(s.navigate.as_deref(), Some(POST_LOGOUT_URL));
        assert!(r.devices(t).is_empty());
    }

    #[test]
    fn a_page_that_stops_polling_is_forgotten_and_its_qr_expires() {
        let (mut r, t0) = registry();
        let id = r.open_page(None, t0);
        let t = t0 + Duration::from_millis(100);
        r.tick(t);
        let qr = r.snapshot(&id, 0).unwrap().qr.unwrap();
        let t = t + Duration::from_secs(5);
        assert_eq!(
            r.scan(&qr, "5491100000000", None, t),
            Err(LinkError::Expired),
            "not alive"
        );
        r.tick(t + Duration::from_secs(61));
        assert!(r.pages(t).is_empty());
        assert_eq!(
            r.scan(&qr, "5491100000000", None, t),
            Err(LinkError::Expired),
            "retired"
        );
    }

    #[test]
    fn unknown_credential_is_wiped_and_gets_a_qr() {
        let (mut r, t0) = registry();
        let id = r.open_page(Some("stale".into()), t0);
        assert!(r.snapshot(&id, 0).unwrap().credential.is_none());
        r.tick(t0 + Duration::from_millis(100));
        assert_eq!(r.snapshot(&id, 0).unwrap().state, WaState::Unpaired);
    }

    #[test]
    fn second_window_conflicts_and_takeover_returns() {
        let (mut r, t0) = registry();
        let a = r.open_page(None, t0);
        let t = t0 + Duration::from_millis(100);
        r.tick(t);
        keep_alive(&mut r, &a, t);
        let qr = r.snapshot(&a, 0).unwrap().qr.unwrap();
        r.scan(&qr, "5491100000000", None, t).unwrap();
        let t = t + Duration::from_millis(100);
        r.tick(t);
        let cred = r.snapshot(&a, 0).unwrap().credential.unwrap();
        let b = r.open_page(Some(cred), t);
        let t = t + Duration::from_millis(100);
        r.tick(t);
        assert_eq!(r.snapshot(&a, 0).unwrap().state, WaState::Conflict);
        assert_eq!(r.snapshot(&b, 0).unwrap().state, WaState::Connected);
        r.page_action(&a, PageAction::Takeover, t).unwrap();
        assert_eq!(r.snapshot(&a, 0).unwrap().state, WaState::Connected);
        assert_eq!(r.snapshot(&b, 0).unwrap().state, WaState::Conflict);
        keep_alive(&mut r, &a, t);
        assert_eq!(r.conflict("5491100000000"), Ok(1));
        assert_eq!(r.snapshot(&a, 0).unwrap().state, WaState::Conflict);
    }

    #[test]
    fn pairing_code_links_with_the_flow_phone() {
        let (mut r, t0) = registry();
        let id = r.open_page(None, t0);
        let t = t0 + Duration::from_millis(100);
        r.tick(t);
        keep_alive(&mut r, &id, t);
        let code = r
            .page_action(
                &id,
                PageAction::AltLinking {
                    phone: "+5491100000000".into(),
                },
                t,
            )
            .unwrap()
            .unwrap();
        assert_eq!(code.len(), 8);
        assert_eq!(
            r.pair_with_code("XXXXXXXX", None, t),
            Err(LinkError::NotFound)
        );
        r.pair_with_code(&format!("{}-{}", &code[..4], &code[4..]), None, t)
            .unwrap();
        r.tick(t + Duration::from_millis(100));
        let s = r.snapshot(&id, 0).unwrap();
        assert_eq!(s.state, WaState::Connected);
        assert_eq!(s.me.unwrap().phone, "5491100000000");
    }
}
