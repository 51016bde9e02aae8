//! One send, from a caller's request to the page's answer: check the input, answer a known key
//! from the journal, wait for the session's rate, look the number up, record the key, ask the
//! page to send, record the result.
//!
//! Concurrent requests with one key take turns (a lock per key): the first sends, the next
//! finds its result in the journal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::ids;
use super::input::{self, Recipient};
use super::journal::{self, Entry, Journal, JournalError};
use super::page::{PageClient, PageError, PageRequest, SentMessage};
use super::rate::{Limits, Rate, Slot};

/// A caller's request.
#[derive(Debug, Clone)]
pub struct Request {
    pub to: String,
    pub text: String,
    pub idempotency_key: Option<String>,
}

/// Longest `Idempotency-Key` (IETF draft-ietf-httpapi-idempotency-key-header leaves it to the
/// server; Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    InvalidTo(String),
    #[error("{0}")]
    InvalidMessage(String),
    #[error("{0}")]
    InvalidKey(String),
    #[error("the idempotency key was used within 24 h for another recipient or text")]
    KeyReused,
    #[error("{0} is not on WhatsApp")]
    NotOnWhatsApp(String),
    #[error("the session is not ready (status {status})")]
    NotReady { status: String },
    #[error("the session's send rate is exhausted; retry in {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error(
        "the message was not handed over to WhatsApp in time; retrying with the same Idempotency-Key never sends it twice"
    )]
    Timeout,
    #[error("send failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Journal(JournalError),
}

impl From<PageError> for SendError {
    fn from(e: PageError) -> Self {
        match e {
            PageError::NotReady { status } => Self::NotReady { status },
            PageError::NotOnWhatsApp => Self::NotOnWhatsApp("the number".into()),
            PageError::Invalid(m) => Self::InvalidMessage(m),
            PageError::Failed(m) => Self::Failed(m),
        }
    }
}

impl From<JournalError> for SendError {
    fn from(e: JournalError) -> Self {
        match e {
            // keys within 24 h at their bound: as much a rate as the rate itself
            JournalError::Full { retry_after, .. } => Self::RateLimited { retry_after },
            e => Self::Journal(e),
        }
    }
}

/// How long each part may take.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From asking the page (number lookup included) to its answer.
    pub send: Duration,
    /// Longest wait for the session's rate before refusing with 429.
    pub queue: Duration,
}

pub struct Sender {
    /// `namespace/name`: message ids differ between sessions for one key.
    session: String,
    page: PageClient,
    journal: Arc<Journal>,
    rate: Mutex<Rate>,
    limits: watch::Receiver<Limits>,
    deadlines: Deadlines,
    keys: Arc<Mutex<Turns>>,
}

type Turns = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

/// A key's turn; the key's lock leaves the map with its last holder.
struct Turn {
    keys: Arc<Mutex<Turns>>,
    digest: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        // ours and the map's: nobody else waits
        if Arc::strong_count(&self.lock) == 2 {
            keys.remove(&self.digest);
        }
    }
}

impl Sender {
    pub fn new(
        session: String,
        page: PageClient,
        journal: Arc<Journal>,
        limits: watch::Receiver<Limits>,
        deadlines: Deadlines,
        jitter: Duration,
    ) -> Self {
        let rate = Rate::new(*limits.borrow(), deadlines.queue, jitter);
        Self {
            session,
            page,
            journal,
            rate: Mutex::new(rate),
            limits,
            deadlines,
            keys: Arc::default(),
        }
    }

    pub async fn send(&self, req: Request) -> Result<SentMessage, SendError> {
        let to = Recipient::parse(&req.to).map_err(SendError::InvalidTo)?;
        input::check_text(&req.text).map_err(SendError::InvalidMessage)?;
        let Some(key) = req.idempotency_key.as_deref() else {
            let chat = self.resolve(&to).await?;
            return self.ask_page_to_send(&chat, &req.text, ids::random()).await;
        };
        check_key(key)?;
        let digest = ids::fingerprint(&[key.as_bytes()]);
        let fingerprint = ids::fingerprint(&[to.digits.as_bytes(), req.text.as_bytes()]);
        let turn = self.turn(&digest);
        // The one before us may take its whole queue wait and send deadline.
        let _held = tokio::time::timeout(
            self.deadlines.queue + self.deadlines.send,
            turn.lock.clone().lock_owned(),
        )
        .await
        .map_err(|_| SendError::Timeout)?;
        let d = digest.clone();
        let known = self.blocking(move |j| j.get(&d)).await?;
        let entry = match known {
            Some(e) if e.fingerprint != fingerprint => return Err(SendError::KeyReused),
            Some(Entry {
                result: Some(sent), ..
            }) => return Ok(sent),
            // Recorded, and maybe sent: the page recognises the same id.
            Some(e) => {
                self.pace().await?;
                e
            }
            None => {
                let chat = self.resolve(&to).await?;
                let e = Entry {
                    fingerprint,
                    message_id: ids::from_key(&self.session, key),
                    chat,
                    created_at: journal::now_secs(),
                    result: None,
                };
                let (d, rec) = (digest.clone(), e.clone());
                self.blocking(move |j| j.put(&d, &rec)).await?;
                e
            }
        };
        let sent = self
            .ask_page_to_send(&entry.chat, &req.text, entry.message_id.clone())
            .await?;
        let done = Entry {
            result: Some(sent.clone()),
            ..entry
        };
        self.blocking(move |j| j.put(&digest, &done)).await?;
        Ok(sent)
    }

    /// Waits for the rate, then looks the number up on WhatsApp.
    async fn resolve(&self, to: &Recipient) -> Result<String, SendError> {
        self.pace().await?;
        let (reply, answer) = oneshot::channel();
        let chat = self
            .ask(
                PageRequest::NumberId {
                    to: to.digits.clone(),
                    reply,
                },
                answer,
            )
            .await?;
        chat.ok_or_else(|| SendError::NotOnWhatsApp(to.digits.clone()))
    }

    async fn ask_page_to_send(
        &self,
        chat: &str,
        text: &str,
        id: String,
    ) -> Result<SentMessage, SendError> {
        let (reply, answer) = oneshot::channel();
        self.ask(
            PageRequest::SendText {
                chat: chat.to_string(),
                body: text.to_string(),
                id,
                reply,
            },
            answer,
        )
        .await
    }

    /// One request to the session loop, within the send deadline.
    async fn ask<T>(
        &self,
        request: PageRequest,
        answer: oneshot::Receiver<Result<T, PageError>>,
    ) -> Result<T, SendError> {
        let exchange = async {
            if self.page.requests.send(request).await.is_err() {
                // The loop that owns the page is not running (the agent is stopping).
                return Err(SendError::NotReady {
                    status: "stopping".into(),
                });
            }
            match answer.await {
                Ok(r) => r.map_err(SendError::from),
                Err(_) => Err(SendError::NotReady {
                    status: "restarting".into(),
                }),
            }
        };
        tokio::time::timeout(self.deadlines.send, exchange)
            .await
            .map_err(|_| SendError::Timeout)?
    }

    async fn pace(&self) -> Result<(), SendError> {
        let slot = {
            let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
            rate.set_limits(*self.limits.borrow());
            rate.reserve(Instant::now(), rand::random::<f64>())
        };
        match slot {
            Slot::After(wait) => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Slot::Refused { retry_after } => Err(SendError::RateLimited { retry_after }),
        }
    }

    fn turn(&self, digest: &str) -> Turn {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        Turn {
            keys: self.keys.clone(),
            digest: digest.to_string(),
            lock: keys.entry(digest.to_string()).or_default().clone(),
        }
    }

    /// The journal's file I/O (fsync) off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, SendError> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || f(&journal))
            .await
            .map_err(|e| SendError::Failed(format!("journal task: {e}")))?
            .map_err(SendError::from)
    }
}

/// Printable ASCII, 1 to [`MAX_KEY_LEN`] characters (what an HTTP header carries safely).
fn check_key(key: &str) -> Result<(), SendError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (0x21..0x7f).contains(&b))
    {
        return Err(SendError::InvalidKey(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}
