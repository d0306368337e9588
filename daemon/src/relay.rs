//! The relay: drives every submission from `queued` to a final state — sends it with its
//! idempotency key, stores the receipt, asks for the 受付 result, holds it while the reception
//! window is closed, retries transient failures with backoff and jitter.
//!
//! Invariants kept here:
//! - **Exactly once at the federation.** A submission enters `sending` (committed) before its
//!   request leaves. Whenever the outcome of a send is unknown — a timeout, a reset, a 5xx, a
//!   crash — the submission stays `sending`, and the next step for it is to ask the gateway by
//!   idempotency key; only if the gateway has no record is it sent again, under the same key.
//! - **A submission is "sent" only after the gateway returned a receipt**, and the receipt is
//!   committed before anything else happens to it.
//! - **The gateway is the clock.** Whether the window is open and which processing month it is
//!   come from `GET /v1/health` (refreshed at least hourly and at each window boundary), never
//!   from this machine's calendar.
//! - **The truth is in redb.** The loop rebuilds its work from the store's active set on every
//!   pass; wake-ups are hints.
//! - One failing file never blocks the others: each submission is its own task.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use admin_ui::help::{self, code};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::claim::Month;
use crate::config::{GatewaySettings, RelaySettings};
use crate::federation::{
    GatewayApi, GatewayError, GatewayWindow, WireIssue, WireReceipt, WireStatus,
};
use crate::store::Store;
use crate::submission::{
    Attempt, GatewayIssue, Note, Receipt, Reception, State, Submission, SubmissionId,
};
use crate::timefmt::jst_minutes;

/// The relay and what it works with.
pub struct Relay<G: GatewayApi> {
    /// The gateway client.
    pub gateway: Arc<G>,
    /// The store.
    pub store: Store,
    /// Sending and retry settings.
    pub settings: RelaySettings,
    /// Gateway polling settings.
    pub gateway_settings: GatewaySettings,
    /// Woken by intake when a submission is queued.
    pub wakeup: Arc<Notify>,
    /// Publishes the gateway's reception window to intake and to the loop.
    pub window: watch::Sender<Option<GatewayWindow>>,
    /// The drop folder, whose result files (`送信済/NAME.結果.txt`) follow every change.
    pub drop_dir: std::path::PathBuf,
    /// Stops all requests for a while when the gateway keeps failing.
    pub breaker: std::sync::Mutex<Breaker>,
    /// Limits the requests open at the gateway at once.
    pub slots: RequestSlots,
    /// Rewrites result notes after each change.
    pub notes: crate::intake::NoteWriter,
    /// Told when a claim arrived at the gateway (the notice mirror polls sooner then).
    pub sent: Arc<Notify>,
}

/// How many requests may be open at the gateway at once: `max_concurrent_sends` uploads (and
/// reconciliations), and as many status polls. A job holds a slot only for its request, not
/// for the store commits before and after it, so those overlap with other jobs' requests and
/// share fsyncs in the store's group commit.
#[derive(Debug)]
pub struct RequestSlots {
    sends: tokio::sync::Semaphore,
    polls: tokio::sync::Semaphore,
}

impl RequestSlots {
    /// Slots for `max_concurrent_sends` uploads and as many polls.
    pub fn new(max_concurrent_sends: usize) -> RequestSlots {
        RequestSlots {
            sends: tokio::sync::Semaphore::new(max_concurrent_sends.max(1)),
            polls: tokio::sync::Semaphore::new(max_concurrent_sends.max(1)),
        }
    }

    async fn send(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.sends.acquire().await.ok()
    }

    async fn poll(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.polls.acquire().await.ok()
    }
}

/// Jobs in flight per request slot: while one job's request is open, others commit their
/// state before or after theirs.
const JOBS_PER_SLOT: usize = 4;

/// Time between two planning passes: fifty times what the last pass cost, between these two
/// bounds. A pass reads the whole agenda, so during a month-start burst (thousands of active
/// submissions, a pass of some milliseconds) wake-ups cost a few passes per second rather
/// than one per file, while a lone file dropped on a quiet day is planned within a
/// millisecond or two.
const MIN_PASS_SPACING: Duration = Duration::from_millis(1);
const MAX_PASS_SPACING: Duration = Duration::from_millis(100);
const PASS_SPACING_FACTOR: u32 = 50;
/// A pass at least this often, whatever else happens.
const IDLE_PASS: Duration = Duration::from_secs(60);
/// Transient failure events in a row (from any submission) that open the circuit breaker.
const BREAKER_TRIP_AFTER: u32 = 5;
/// How long the breaker first stays open; doubled after each failed probe.
const BREAKER_FIRST_PAUSE: Duration = Duration::from_secs(2);
/// The longest pause.
const BREAKER_MAX_PAUSE: Duration = Duration::from_secs(120);
/// Failures this close to the first of an event count as that one event. Requests share
/// connections (HTTP/2 carries them all on one), so one dropped connection fails every request
/// in flight at the same instant: that is one fault, not five.
const BREAKER_SAME_EVENT: Duration = Duration::from_millis(50);

/// The relay loop's working memory: the jobs due at the last pass and what is running. Rebuilt
/// from the store's agenda at every pass; it never holds anything the store does not.
#[derive(Debug, Default)]
struct Plan {
    /// Sends and reconciliations due, in agenda order.
    backlog: VecDeque<(SubmissionId, Job)>,
    /// Status polls due.
    poll_backlog: VecDeque<(SubmissionId, Job)>,
    in_flight: HashSet<SubmissionId>,
    sends: usize,
    polls: usize,
    last_pass: Option<tokio::time::Instant>,
    /// What the last pass cost.
    last_pass_cost: Duration,
    next_pass_at: Option<tokio::time::Instant>,
}

impl Plan {
    /// How long after the last pass the next may run.
    fn spacing(&self) -> Duration {
        (self.last_pass_cost * PASS_SPACING_FACTOR).clamp(MIN_PASS_SPACING, MAX_PASS_SPACING)
    }

    fn started(&mut self, id: &SubmissionId, job: Job) {
        self.in_flight.insert(id.clone());
        match job {
            Job::Poll => self.polls += 1,
            Job::Send | Job::Reconcile => self.sends += 1,
        }
    }

    fn finished(&mut self, id: &SubmissionId, job: Job) {
        if self.in_flight.remove(id) {
            match job {
                Job::Poll => self.polls = self.polls.saturating_sub(1),
                Job::Send | Job::Reconcile => self.sends = self.sends.saturating_sub(1),
            }
        }
    }

    fn clear_in_flight(&mut self) {
        self.in_flight.clear();
        self.sends = 0;
        self.polls = 0;
    }
}

/// A circuit breaker for the gateway. After `BREAKER_TRIP_AFTER` transient failure events in a
/// row (failures within `BREAKER_SAME_EVENT` of each other are one event) it opens: no request starts for a pause; then one probe
/// goes; its success closes the breaker, its failure doubles the pause (up to
/// `BREAKER_MAX_PAUSE`). Only the probe's own outcome decides: a request that started before
/// the probe and fails late says nothing about the gateway now. While it is open, the relay
/// neither hammers a gateway that is down nor burns each file's own retry budget. Time is
/// tokio's, so tests drive it under `tokio::time::pause()`.
#[derive(Debug, Default)]
pub struct Breaker {
    failures_in_row: u32,
    events_in_row: u32,
    last_event_at: Option<tokio::time::Instant>,
    open_until: Option<tokio::time::Instant>,
    pause: Duration,
    /// When the probe out now started, if one is.
    probe_started: Option<tokio::time::Instant>,
}

/// The breaker's answer to "may a request start now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: go.
    Go,
    /// Half-open: go as the one probe (started at this instant).
    Probe(tokio::time::Instant),
    /// Open, or a probe is out: wait.
    Wait,
}

impl Breaker {
    /// Whether a request may start now; in the half-open state, only one (the probe).
    pub fn permit(&mut self, now: tokio::time::Instant) -> Permit {
        match self.open_until {
            None => Permit::Go,
            Some(t) if now < t => Permit::Wait,
            Some(_) if self.probe_started.is_some() => Permit::Wait,
            Some(_) => {
                self.probe_started = Some(now);
                Permit::Probe(now)
            }
        }
    }

    /// The job that was let through as the probe at `started` has ended. If it never reached
    /// the gateway (it needed a person first, say), the next job becomes the probe instead.
    pub fn probe_ended(&mut self, started: tokio::time::Instant) {
        if self.probe_started == Some(started) {
            self.probe_started = None;
        }
    }

    /// Until when requests are held back, if they are (and no probe is out).
    pub fn blocked_until(&self) -> Option<tokio::time::Instant> {
        if self.probe_started.is_some() {
            None
        } else {
            self.open_until
        }
    }

    /// The gateway answered (a receipt, a status, even a refusal): it is up.
    pub fn answered(&mut self) {
        if self.open_until.is_some() {
            info!("the gateway answers again; sending resumes");
        }
        *self = Breaker::default();
    }

    /// A transient failure (no connection, timeout, 5xx) of a request that started at
    /// `started`.
    pub fn failed(&mut self, now: tokio::time::Instant, started: tokio::time::Instant) {
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        if self
            .last_event_at
            .is_none_or(|t| now.duration_since(t) >= BREAKER_SAME_EVENT)
        {
            self.events_in_row = self.events_in_row.saturating_add(1);
            self.last_event_at = Some(now);
        }
        let reopen = match (self.open_until, self.probe_started) {
            (Some(_), Some(probe)) if started >= probe => {
                self.pause = (self.pause * 2).min(BREAKER_MAX_PAUSE);
                true
            }
            // A request from before the breaker opened or before the probe.
            (Some(_), _) => false,
            (None, _) if self.events_in_row >= BREAKER_TRIP_AFTER => {
                self.pause = BREAKER_FIRST_PAUSE;
                true
            }
            (None, _) => false,
        };
        if reopen {
            self.probe_started = None;
            self.open_until = Some(now + self.pause);
            warn!(
                failures_in_row = self.failures_in_row,
                pause_ms = self.pause.as_millis() as u64,
                "ゲートウェイとのやり取りの失敗が続いているため、すべての送信をしばらく止めます (the gateway keeps failing; pausing all requests)"
            );
        }
    }

    /// Whether the breaker is open (requests held back or a probe out).
    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }
}

impl<G: GatewayApi> std::fmt::Debug for Relay<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").finish_non_exhaustive()
    }
}

/// Delay before the next try after `failures` failures in a row: doubling from `initial`,
/// capped at `max`, with "equal jitter" (a random point in the upper half), and never shorter
/// than the server's `Retry-After`.
pub fn backoff(
    initial: Duration,
    max: Duration,
    failures: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = initial.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let half = capped / 2;
    let jitter = Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64));
    let delay = half + jitter;
    match retry_after {
        Some(r) => delay.max(r),
        None => delay,
    }
}

fn issues(v: &[WireIssue]) -> Vec<GatewayIssue> {
    v.iter()
        .map(|i| GatewayIssue {
            record_no: i.record_no,
            code: i.code.clone(),
            message: i.message.clone(),
        })
        .collect()
}

fn after(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(now)
}

/// What a refusal means for a clerk.
fn refusal_note(status: u16, code: &str, message: &str) -> Note {
    let (ja, en) = match code {
        "bad_credentials" => (
            "国保連が伝送用ユーザーIDまたはパスワードを受け付けませんでした。国保連でパスワードを変えた（期限で変わった）ときは、システム管理者が装置のパスワードも同じにしてから（運用の手引き「国保連のパスワードを変えたとき」）、このファイルのページで「もう一度送信する」を押してください。",
            "The federation did not accept the user ID or password. If the password was changed at the federation (or expired), the system administrator gives the appliance the same password (operations manual, \"When the federation password changes\"); then press Send again on this file's page.",
        ),
        "certificate_not_allowed" => (
            "国保連が、この電子証明書ではこの事業所の請求を受け付けませんでした。証明書を更新したときは、システム管理者が新しい証明書を装置に登録してから（運用の手引き「4. 電子証明書」）、このファイルのページで「もう一度送信する」を押してください。",
            "The federation does not accept this client certificate for this office. If the certificate was renewed, the system administrator gives the new one to the appliance (operations manual, \"4. Client certificates\"); then press Send again on this file's page.",
        ),
        "office_not_registered" => (
            "この事業所は国保連のインターネット請求に登録されていません。国保連への届出の状況を確かめ、登録が済んでから「もう一度送信する」を押してください。",
            "This office is not registered for internet claims at the federation. Check its registration with the federation; once it is registered, press Send again.",
        ),
        "too_large" => (
            "ファイルが大きすぎて受け付けられませんでした。請求ソフトでファイルを分けて作り直し、投入フォルダーに置いてください。",
            "The file is too large for the gateway. Make it again in smaller parts in the billing software and put them in the drop folder.",
        ),
        "idempotency_mismatch" => (
            "国保連に、同じ受付キーで別の内容の送信が記録されていたため拒否されました。二重請求を防ぐため自動では送りません。サポートに連絡してください。",
            "The gateway holds different content under this submission's key, so it was refused; it is not sent again automatically, to prevent a double claim. Contact support.",
        ),
        _ => (
            "国保連のゲートウェイが送信を受け付けませんでした。かっこ内の国保連からの応答を確かめ、わからないときはサポートに連絡してください。",
            "The gateway refused the submission. Read its answer in brackets; if it is unclear, contact support.",
        ),
    };
    Note {
        code: Some(help::gateway(code).as_str().into()),
        ja: format!("{ja}（国保連からの応答、問い合わせ用: HTTP {status} {code}: {message}）"),
        en: format!("{en} (the gateway's answer, for support: HTTP {status} {code}: {message})"),
    }
}

impl<G: GatewayApi> Relay<G> {
    /// Runs until `shutdown` is cancelled, then gives in-flight work `shutdown_grace` to finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let refresh_now = Arc::new(Notify::new());
        let refresher = tokio::spawn(
            this.clone()
                .refresh_window(refresh_now.clone(), shutdown.clone()),
        );
        let mut window_rx = this.window.subscribe();
        // A crash between a commit and the rewrite of a result file leaves that note one step
        // behind: bring the notes of claims changed in the last 60 days up to date (only those
        // that differ are written).
        // Done before the loop starts, so no newer rewrite can race with it.
        let (store, drop_dir) = (this.store.clone(), this.drop_dir.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let since = Timestamp::now() - SignedDuration::from_hours(24 * 60);
            let refreshed = store.each(|s| {
                if s.history.last().is_some_and(|t| t.at >= since) {
                    crate::intake::refresh_result_file(&drop_dir, &s);
                }
                Ok::<(), crate::store::StoreError>(())
            });
            if let Err(e) = refreshed {
                warn!(error = %e, "データベースを読めないため、結果ファイルを更新できません (cannot read the store to refresh result files)");
            }
        })
        .await;
        let mut plan = Plan::default();
        let mut tasks: JoinSet<(SubmissionId, Job)> = JoinSet::new();
        let mut pass_wanted = true;
        info!("relay started");
        loop {
            let now = tokio::time::Instant::now();
            let pass_due = plan.next_pass_at.is_some_and(|t| t <= now);
            let pass_allowed = plan.last_pass.is_none_or(|t| now >= t + plan.spacing());
            if (pass_wanted || pass_due) && pass_allowed {
                pass_wanted = false;
                plan.last_pass = Some(now);
                let planned = this.plan_pass(&mut plan).await;
                plan.last_pass_cost = now.elapsed();
                match planned {
                    Ok(()) => {}
                    Err(e) => {
                        error!(
                            error = format!("{e:#}"),
                            "送信の処理でデータベースを読めません。自動でやり直します (relay cannot read the store; retrying)"
                        );
                        plan.next_pass_at = Some(now + Duration::from_secs(5));
                    }
                }
            }
            this.start_jobs(&mut plan, &mut tasks, &refresh_now);
            // Sleep until the next planned pass, a deferred wanted pass, or the breaker's probe.
            let mut wake = plan
                .next_pass_at
                .unwrap_or(now + IDLE_PASS)
                .min(now + IDLE_PASS);
            if pass_wanted && let Some(last) = plan.last_pass {
                wake = wake.min(last + plan.spacing());
            }
            if !(plan.backlog.is_empty() && plan.poll_backlog.is_empty())
                && let Some(t) = this
                    .breaker
                    .lock()
                    .map(|b| b.blocked_until())
                    .unwrap_or(None)
            {
                wake = wake.min(t);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = this.wakeup.notified() => pass_wanted = true,
                _ = window_rx.changed() => pass_wanted = true,
                Some(done) = tasks.join_next() => {
                    match done {
                        Ok((id, job)) => {
                            plan.finished(&id, job);
                            if plan.backlog.is_empty() && plan.poll_backlog.is_empty() {
                                pass_wanted = true;
                            }
                        }
                        Err(e) => {
                            error!(error = %e, "送信の内部の処理が失敗しました (a relay task failed)");
                            plan.clear_in_flight(); // rebuilt from the store on the next pass
                            tasks.detach_all();
                            pass_wanted = true;
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        let grace = this.settings.shutdown_grace;
        if !tasks.is_empty() {
            info!(
                in_flight = tasks.len(),
                grace_secs = grace.as_secs(),
                "relay draining"
            );
        }
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!(
                left = tasks.len(),
                "送信の途中で停止しました。その請求ファイルは「送信中」のまま残し、次の起動時にゲートウェイに問い合わせて確かめます (relay stopped with requests in flight; they stay 'sending' and are reconciled with the gateway at the next start)"
            );
            tasks.abort_all();
        }
        refresher.abort();
        info!("relay stopped");
        Ok(())
    }

    /// Keeps the reception window fresh: at start, at least every `health_refresh`, at each
    /// window boundary the gateway announced, and when a send met a closed window.
    async fn refresh_window(self: Arc<Self>, now: Arc<Notify>, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let wait = match self.gateway.window().await {
                Ok(w) => {
                    failures = 0;
                    let boundary = if w.open { w.closes_at } else { w.opens_at };
                    let until = boundary.duration_since(w.gateway_now);
                    let until =
                        Duration::try_from(until).unwrap_or_default() + Duration::from_secs(1);
                    let changed = self
                        .window
                        .borrow()
                        .as_ref()
                        .map(|o| (o.open, o.processing_month))
                        != Some((w.open, w.processing_month));
                    if changed {
                        info!(open = w.open, processing_month = %w.processing_month, "reception window from the gateway");
                    }
                    self.window.send_replace(Some(w));
                    self.gateway_settings.health_refresh.min(until)
                }
                Err(e) => {
                    failures += 1;
                    let d = backoff(
                        Duration::from_secs(1),
                        Duration::from_secs(60),
                        failures,
                        e.retry_after(),
                    );
                    warn!(error = %e, retry_in_ms = d.as_millis() as u64, "ゲートウェイから受付期間を読み取れません (cannot read the reception window from the gateway)");
                    d
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = now.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One planning pass over the agenda (a few bytes per active submission): holds what the
    /// closed window keeps back, stops what is for a month no longer received, and lists in the
    /// backlog every gateway job that is due; notes when the next one falls due.
    async fn plan_pass(&self, plan: &mut Plan) -> anyhow::Result<()> {
        let agenda = self.store.call(|s| s.agenda()).await?;
        let window = self.window.borrow().clone();
        let now = Timestamp::now();
        let mut next: Option<Duration> = None;
        let mut soonest = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));
        plan.backlog.clear();
        plan.poll_backlog.clear();
        for entry in agenda {
            if plan.in_flight.contains(&entry.id) {
                continue;
            }
            if let Some(t) = entry.next_action_at
                && t > now
            {
                soonest(Duration::try_from(t.duration_since(now)).unwrap_or_default());
                continue;
            }
            let job = match entry.state {
                State::Sending => Job::Reconcile,
                State::Arrived => Job::Poll,
                State::Queued | State::Held => {
                    let Some(w) = &window else { continue };
                    if !w.open {
                        if entry.state == State::Queued {
                            self.hold(&entry.id, w).await?;
                        }
                        continue;
                    }
                    if entry
                        .processing_month
                        .is_some_and(|m| m != w.processing_month)
                    {
                        self.month_passed(&entry.id, entry.processing_month, w)
                            .await?;
                        continue;
                    }
                    Job::Send
                }
                _ => continue,
            };
            match job {
                Job::Poll => plan.poll_backlog.push_back((entry.id, job)),
                Job::Send | Job::Reconcile => plan.backlog.push_back((entry.id, job)),
            }
        }
        plan.next_pass_at = next.map(|d| tokio::time::Instant::now() + d);
        Ok(())
    }

    /// Starts backlog jobs while there is room (sends and reconciliations share
    /// `max_concurrent_sends`; status polls have as many again) and the circuit breaker lets
    /// requests through. Sends are started in batches: only once half of their jobs have
    /// finished are new ones started, up to the limit. Their `sending` marks then reach the
    /// store together and share one fsync, instead of one fsync per file as jobs finish one by
    /// one; the jobs still waiting keep every request slot busy meanwhile.
    fn start_jobs(
        self: &Arc<Self>,
        plan: &mut Plan,
        tasks: &mut JoinSet<(SubmissionId, Job)>,
        refresh_now: &Arc<Notify>,
    ) {
        let limit = self.settings.max_concurrent_sends.max(1) * JOBS_PER_SLOT;
        if plan.sends <= limit / 2 {
            self.start_from(Queue::Sends, plan, tasks, refresh_now, limit);
        }
        self.start_from(Queue::Polls, plan, tasks, refresh_now, limit);
    }

    /// Starts jobs from one backlog until it is empty, its side is at `limit`, or the breaker
    /// holds requests back.
    fn start_from(
        self: &Arc<Self>,
        queue: Queue,
        plan: &mut Plan,
        tasks: &mut JoinSet<(SubmissionId, Job)>,
        refresh_now: &Arc<Notify>,
        limit: usize,
    ) {
        loop {
            let running = match queue {
                Queue::Sends => plan.sends,
                Queue::Polls => plan.polls,
            };
            if running >= limit {
                return;
            }
            let backlog = match queue {
                Queue::Sends => &mut plan.backlog,
                Queue::Polls => &mut plan.poll_backlog,
            };
            let Some((id, job)) = backlog.pop_front() else {
                return;
            };
            if plan.in_flight.contains(&id) {
                continue;
            }
            let permit = self
                .breaker
                .lock()
                .map(|mut b| b.permit(tokio::time::Instant::now()))
                .unwrap_or(Permit::Go);
            if permit == Permit::Wait {
                // It keeps its place at the front.
                backlog.push_front((id, job));
                return;
            }
            plan.started(&id, job);
            let this = self.clone();
            let refresh = refresh_now.clone();
            tasks.spawn(async move {
                this.work(job, &id, &refresh).await;
                if let Permit::Probe(started) = permit
                    && let Ok(mut b) = this.breaker.lock()
                {
                    b.probe_ended(started);
                }
                (id, job)
            });
        }
    }

    /// Tells the circuit breaker how a gateway call went.
    fn note_gateway<T>(&self, result: &Result<T, GatewayError>, started: tokio::time::Instant) {
        let Ok(mut breaker) = self.breaker.lock() else {
            return;
        };
        match result {
            Err(GatewayError::NotSent { .. } | GatewayError::Unknown { .. }) => {
                breaker.failed(tokio::time::Instant::now(), started)
            }
            Err(GatewayError::UnknownOffice(_)) => {}
            _ => breaker.answered(),
        }
    }

    /// Changes one submission in the store and returns it as stored; its result note follows.
    async fn update(
        &self,
        id: &SubmissionId,
        f: impl FnOnce(&mut Submission, Timestamp) + Send + 'static,
    ) -> anyhow::Result<Submission> {
        let sub = self
            .store
            .update_async(id, |sub| f(sub, Timestamp::now()))
            .await?;
        self.notes.refresh(&sub.id);
        Ok(sub)
    }

    /// [`Relay::update`] for what the gateway can tell again: committed without its own fsync
    /// and durable within the store's deferred flush. If a power cut takes it, the submission is
    /// back where the gateway is asked again (`sending`: reconciled by key; `arrived`: polled).
    async fn update_deferred(
        &self,
        id: &SubmissionId,
        f: impl FnOnce(&mut Submission, Timestamp) + Send + 'static,
    ) -> anyhow::Result<Submission> {
        let sub = self
            .store
            .update_async_deferred(id, |sub| f(sub, Timestamp::now()))
            .await?;
        self.notes.refresh(&sub.id);
        Ok(sub)
    }

    async fn hold(&self, id: &SubmissionId, w: &GatewayWindow) -> anyhow::Result<()> {
        let opens = jst_minutes(w.opens_at);
        let opens_en = crate::timefmt::jst_minutes_en(w.opens_at);
        let month = w.processing_month;
        info!(submission = %id, opens_at = %w.opens_at, "reception window closed; holding");
        self.update(id, move |s, now| {
            s.note = Some(Note {
                code: Some(code::RELAY_HELD.as_str().into()),
                ja: format!(
                    "受付期間外のため保留しています。{opens} からの受付（{} 分）で自動的に送信します。",
                    month.to_japanese()
                ),
                en: format!(
                    "Held: the reception window is closed. It will be sent automatically when the window for {month} opens ({opens_en})."
                ),
            });
            s.transition(State::Held, "受付期間外 / window closed", now);
        })
        .await?;
        Ok(())
    }

    async fn month_passed(
        &self,
        id: &SubmissionId,
        file_month: Option<Month>,
        w: &GatewayWindow,
    ) -> anyhow::Result<()> {
        let current = w.processing_month;
        error!(code = %admin_ui::help::code::RELAY_MONTH_MISMATCH, submission = %id, file_month = ?file_month.map(|m| m.to_string()), current = %current, "請求ファイルの処理対象年月が、いま受付中の処理対象年月と違います (processing month of the file is not the one being received)");
        self.update(id, move |s, now| {
            let fm = file_month.map(|m| m.to_japanese()).unwrap_or_default();
            s.note = Some(Note {
                code: Some(code::RELAY_MONTH_MISMATCH.as_str().into()),
                ja: format!(
                    "このファイルの処理対象年月は {fm} ですが、いま受け付けているのは {} 分です。請求ソフトで処理対象年月を直して作り直してください。",
                    current.to_japanese()
                ),
                en: format!(
                    "The file is for processing month {}, but the federation is now receiving {current}. Create it again with the right month.",
                    file_month.map(|m| m.to_string()).unwrap_or_default()
                ),
            });
            s.transition(
                State::FailedNeedsAttention,
                "処理対象年月が違う / processing month passed",
                now,
            );
        })
        .await?;
        Ok(())
    }

    /// Runs one job on the submission as it is in the store now (the plan may be stale).
    async fn work(&self, job: Job, id: &SubmissionId, refresh: &Notify) {
        let wanted = id.clone();
        let sub = match self.store.call(move |s| s.get(&wanted)).await {
            Ok(Some(sub)) => sub,
            Ok(None) => return,
            Err(e) => {
                error!(submission = %id, error = format!("{e:#}"), "データベースから請求ファイルの記録を読めません。自動でやり直します (cannot read a submission from the store; will retry)");
                return;
            }
        };
        let still = match job {
            Job::Send => matches!(sub.state, State::Queued | State::Held),
            Job::Reconcile => sub.state == State::Sending,
            Job::Poll => sub.state == State::Arrived,
        };
        if !still || sub.next_action_at.is_some_and(|t| t > Timestamp::now()) {
            return;
        }
        let span = info_span!(
            "claim",
            submission = %sub.id,
            file = %sub.file_name,
            office = %sub.office_number.as_ref().map(|o| o.to_string()).unwrap_or_default()
        );
        let result = async {
            match job {
                Job::Send => self.send(sub, refresh).await,
                Job::Reconcile => self.reconcile(sub, refresh).await,
                Job::Poll => self.poll(sub).await,
            }
        }
        .instrument(span.clone())
        .await;
        if let Err(e) = result {
            span.in_scope(|| {
                error!(
                    error = format!("{e:#}"),
                    "送信の結果をデータベースに書き込めませんでした。自動でやり直します (could not record the outcome in the store; will retry)"
                )
            });
        }
    }

    /// Asks the gateway whether it has this submission; sends only if it has not.
    async fn reconcile(&self, sub: Submission, refresh: &Notify) -> anyhow::Result<()> {
        let Some(office) = sub.office_number.clone() else {
            return self
                .needs_attention(
                    &sub.id,
                    "事業所番号が読み取れません / office number missing",
                    None,
                )
                .await;
        };
        let slot = self.slots.send().await;
        let t = Try::start("reconcile");
        crate::failpoint::hit("relay.before_reconcile");
        let started = tokio::time::Instant::now();
        let found = self.gateway.find_by_key(&office, sub.id.as_str()).await;
        drop(slot);
        // A reconciliation can be the breaker's probe: its outcome must close or reopen it.
        self.note_gateway(&found, started);
        match found {
            Ok(Some(receipt)) => {
                info!(receipt = %receipt.receipt_id, "the gateway already has this submission");
                self.record_receipt(&sub.id, t, receipt).await
            }
            Ok(None) => {
                info!("the gateway has no record of this submission; sending it");
                let attempt = t.attempt("not found at the gateway", true);
                self.update(&sub.id, move |s, _| s.attempts.push(attempt))
                    .await?;
                self.send(sub, refresh).await
            }
            Err(e) => self.failed_try(&sub, t, e, refresh).await,
        }
    }

    async fn send(&self, sub: Submission, refresh: &Notify) -> anyhow::Result<()> {
        let Some(office) = sub.office_number.clone() else {
            return self
                .needs_attention(
                    &sub.id,
                    "事業所番号が読み取れません / office number missing",
                    None,
                )
                .await;
        };
        // Committed as `sending` before the request leaves: after a crash from here on, the
        // gateway is asked by key before anything is sent again.
        crate::failpoint::hit("relay.before_sending_commit");
        let begun = tokio::time::Instant::now();
        self.update(&sub.id, |s, now| {
            s.next_action_at = None;
            if s.state != State::Sending {
                s.transition(State::Sending, "送信開始 / sending", now);
            }
        })
        .await?;
        crate::failpoint::hit("relay.after_sending_commit");
        let sha = sub.sha256.clone();
        let Some(body) = self.store.call(move |s| s.blob(&sha)).await? else {
            return self
                .needs_attention(&sub.id, "ファイルの内容が装置の記録にありません / the file's bytes are missing from the store", None)
                .await;
        };
        let slot = self.slots.send().await;
        let t = Try::start("send");
        let started = tokio::time::Instant::now();
        let result = self
            .gateway
            .submit(&office, sub.id.as_str(), sub.name_sent(), Bytes::from(body))
            .await;
        drop(slot);
        self.note_gateway(&result, started);
        match result {
            Ok(receipt) => {
                let (receipt_id, status) = (receipt.receipt_id.clone(), receipt.status.clone());
                let duration_ms = t.elapsed_ms();
                let responded = tokio::time::Instant::now();
                self.record_receipt(&sub.id, t, receipt).await?;
                self.sent.notify_one();
                info!(
                    receipt = %receipt_id,
                    %status,
                    duration_ms,
                    before_ms = started.duration_since(begun).as_millis() as u64,
                    commit_ms = responded.elapsed().as_millis() as u64,
                    "sent; receipt stored"
                );
                Ok(())
            }
            Err(e) => self.failed_try(&sub, t, e, refresh).await,
        }
    }

    async fn record_receipt(
        &self,
        id: &SubmissionId,
        t: Try,
        receipt: WireReceipt,
    ) -> anyhow::Result<()> {
        crate::failpoint::hit("relay.after_response");
        let poll = self.gateway_settings.status_poll_interval;
        let attempt = t.attempt(
            format!("receipt {} ({})", receipt.receipt_id, receipt.status),
            true,
        );
        // Deferred durability: until it is durable the store still says `sending`, which after
        // a power cut is reconciled with the gateway by key and finds this same receipt.
        let stored = self
            .update_deferred(id, move |s, now| {
                s.attempts.push(attempt);
                s.receipt = Some(Receipt {
                    receipt_id: receipt.receipt_id.clone(),
                    arrived_at: receipt.arrived_at.clone(),
                    arrival_status: receipt.status.clone(),
                    arrival_errors: issues(&receipt.arrival_errors),
                    stored_at: now,
                });
                if receipt.status == "arrival_failed" {
                    let reasons: Vec<String> =
                        receipt.arrival_errors.iter().map(|e| e.message.clone()).collect();
                    s.note = Some(Note {
                        code: Some(code::RELAY_ARRIVAL_FAILED.as_str().into()),
                        ja: format!(
                            "国保連に到達しませんでした（到達エラー）: {}。内容を直して作り直してください。",
                            reasons.join(" / ")
                        ),
                        en: format!(
                            "Arrival failed at the federation: {}. Correct and create the file again.",
                            reasons.join(" / ")
                        ),
                    });
                    s.next_action_at = None;
                    s.transition(State::Rejected, "到達エラー / arrival failed", now);
                } else {
                    s.note = None;
                    s.next_action_at = Some(after(now, poll));
                    s.transition(
                        State::Arrived,
                        format!("到達 受付番号 {} / arrived", receipt.receipt_id),
                        now,
                    );
                }
            })
            .await?;
        crate::failpoint::hit("relay.after_receipt_commit");
        if stored.state == State::Rejected {
            error!(code = %admin_ui::help::code::RELAY_ARRIVAL_FAILED, receipt = ?stored.receipt.as_ref().map(|r| &r.receipt_id), "国保連で到達エラーになりました。事業所で請求ファイルを直して作り直す必要があります (arrival failed at the federation; the office must correct the file)");
        }
        Ok(())
    }

    async fn poll(&self, sub: Submission) -> anyhow::Result<()> {
        let (Some(office), Some(receipt)) = (sub.office_number.clone(), sub.receipt.clone()) else {
            return self
                .needs_attention(
                    &sub.id,
                    "到達済みなのに受付番号がありません / arrived without a receipt",
                    None,
                )
                .await;
        };
        let slot = self.slots.poll().await;
        let t = Try::start("status");
        let poll = self.gateway_settings.status_poll_interval;
        let started = tokio::time::Instant::now();
        let status = self.gateway.status(&office, &receipt.receipt_id).await;
        drop(slot);
        self.note_gateway(&status, started);
        match status {
            Ok(status) => self.record_status(&sub.id, t, status, poll).await,
            Err(GatewayError::NotFound) => {
                let why = format!(
                    "ゲートウェイに受付番号 {0} の記録がありません / the gateway does not know receipt {0}",
                    receipt.receipt_id
                );
                self.needs_attention(&sub.id, &why, None).await
            }
            Err(e) => {
                warn!(error = %e, "could not read the 受付 result; asking again later");
                let attempt = t.attempt(e.to_string(), false);
                self.update_deferred(&sub.id, move |s, now| {
                    s.attempts.push(attempt);
                    s.next_action_at = Some(after(now, poll));
                })
                .await?;
                Ok(())
            }
        }
    }

    async fn record_status(
        &self,
        id: &SubmissionId,
        t: Try,
        status: WireStatus,
        poll: Duration,
    ) -> anyhow::Result<()> {
        crate::failpoint::hit("relay.after_status_response");
        let next_state = match status.status.as_str() {
            "accepted" => Some(State::Accepted),
            "accepted_with_returns" => Some(State::AcceptedWithReturns),
            "rejected" => Some(State::Rejected),
            "withdrawn" => Some(State::Withdrawn),
            _ => None,
        };
        let mark = status.reception_mark.clone().unwrap_or_default();
        let attempt = t.attempt(format!("{} {mark}", status.status), true);
        // Deferred durability: lost in a power cut, the submission is `arrived` and polled again.
        let stored = self
            .update_deferred(id, move |s, now| {
                s.attempts.push(attempt);
                let errors = status.errors.len();
                s.reception = Some(Reception {
                    status: status.status.clone(),
                    mark: status.reception_mark.clone(),
                    errors: issues(&status.errors),
                    updated_at: status.updated_at.clone(),
                });
                let Some(state) = next_state else {
                    s.next_action_at = Some(after(now, poll));
                    return;
                };
                s.next_action_at = None;
                if state == State::Rejected {
                    s.note = Some(Note {
                        code: Some(code::RELAY_REJECTED.as_str().into()),
                        ja: format!("受付で × になりました（{errors} 件の誤り）。内容を直して作り直し、もう一度送ってください。"),
                        en: format!("Rejected at reception (×, {errors} error(s)). Correct, recreate and send again."),
                    });
                } else if state == State::AcceptedWithReturns {
                    s.note = Some(Note {
                        code: Some(code::RELAY_ACCEPTED_WITH_RETURNS.as_str().into()),
                        ja: format!("受付は △ です。{errors} 件の明細書が後日返戻されます。"),
                        en: format!("Accepted with △: {errors} statement(s) will be returned."),
                    });
                }
                s.transition(state, format!("受付結果 {mark} / reception {}", status.status), now);
            })
            .await?;
        crate::failpoint::hit("relay.after_status_commit");
        match stored.state {
            State::Rejected => {
                error!(code = %admin_ui::help::code::RELAY_REJECTED, "rejected at reception (受付 ×); the office must correct and resend")
            }
            State::AcceptedWithReturns => warn!("accepted with returns (受付 △)"),
            State::Accepted => info!("accepted (受付 ○)"),
            _ => {}
        }
        Ok(())
    }

    /// A send or reconcile that got no receipt.
    async fn failed_try(
        &self,
        sub: &Submission,
        t: Try,
        e: GatewayError,
        refresh: &Notify,
    ) -> anyhow::Result<()> {
        let failures = sub.consecutive_failures() + 1;
        let delay = backoff(
            self.settings.retry_initial,
            self.settings.retry_max,
            failures,
            e.retry_after(),
        );
        match e {
            GatewayError::NotSent { .. } | GatewayError::Unknown { .. } => {
                // Not sent for sure: back to the queue. Maybe sent: stay `sending`, so the next
                // step is to ask the gateway by key.
                let certain = matches!(e, GatewayError::NotSent { .. });
                warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "ゲートウェイへの送信に失敗しました。自動でやり直します (gateway try failed; will retry)");
                let attempt = t.attempt(e.to_string(), false);
                self.update(&sub.id, move |s, now| {
                    s.attempts.push(attempt);
                    s.next_action_at = Some(after(now, delay));
                    if certain && s.state == State::Sending && t.action == "send" {
                        s.transition(
                            State::Queued,
                            "未送信・再送待ち / not sent, will retry",
                            now,
                        );
                    }
                })
                .await?;
                crate::failpoint::hit("relay.after_failed_try_commit");
                Ok(())
            }
            GatewayError::OutsideWindow { next_opens_at } => {
                refresh.notify_one();
                info!(?next_opens_at, "gateway says the window is closed; holding");
                let attempt = t.attempt("outside reception window", true);
                self.update(&sub.id, move |s, now| {
                    s.attempts.push(attempt);
                    let when = next_opens_at
                        .as_deref()
                        .and_then(|t| t.parse::<Timestamp>().ok())
                        .map(jst_minutes)
                        .unwrap_or_else(|| "次の受付開始".into());
                    s.note = Some(Note {
                        code: Some(code::RELAY_HELD.as_str().into()),
                        ja: format!(
                            "受付期間外のため保留しています。{when} から自動的に送信します。"
                        ),
                        en: "Held: the reception window is closed; it will be sent when it opens."
                            .into(),
                    });
                    s.transition(State::Held, "受付期間外 / window closed", now);
                })
                .await?;
                Ok(())
            }
            GatewayError::Refused {
                status,
                ref code,
                ref message,
            } => {
                let note = refusal_note(status, code, message);
                let attempt = t.attempt(e.to_string(), true);
                self.update(&sub.id, move |s, _| s.attempts.push(attempt))
                    .await?;
                self.needs_attention(&sub.id, &e.to_string(), Some(note))
                    .await
            }
            GatewayError::NotFound | GatewayError::UnknownOffice(_) => {
                let note = match &e {
                    GatewayError::UnknownOffice(office) => Note {
                        code: Some(code::RELAY_UNKNOWN_OFFICE.as_str().into()),
                        ja: format!("事業所番号 {office} はこの装置の設定にありません。管理者に事業所の登録を依頼してください。"),
                        en: format!("Office {office} is not configured on this appliance. Ask the administrator to register it."),
                    },
                    _ => Note {
                        code: Some(code::RELAY_GATEWAY_NOT_FOUND.as_str().into()),
                        ja: "ゲートウェイが想定外の応答（該当なし）を返しました。管理者に連絡してください。".into(),
                        en: "The gateway answered \"not found\" unexpectedly. Contact the administrator.".into(),
                    },
                };
                let attempt = t.attempt(e.to_string(), true);
                self.update(&sub.id, move |s, _| s.attempts.push(attempt))
                    .await?;
                self.needs_attention(&sub.id, &e.to_string(), Some(note))
                    .await
            }
        }
    }

    async fn needs_attention(
        &self,
        id: &SubmissionId,
        why: &str,
        note: Option<Note>,
    ) -> anyhow::Result<()> {
        let code = note
            .as_ref()
            .and_then(|n| n.code.clone())
            .unwrap_or_else(|| code::RELAY_NEEDS_ATTENTION.as_str().into());
        error!(%code, reason = why, "この請求ファイルは人の対応が必要です (submission needs a person)");
        let why = why.to_owned();
        self.update(id, move |s, now| {
            s.next_action_at = None;
            s.note = Some(note.unwrap_or(Note {
                code: Some(code::RELAY_NEEDS_ATTENTION.as_str().into()),
                ja: format!("送信できませんでした。管理者に連絡してください（{why}）。"),
                en: format!("Could not be sent; contact the administrator ({why})."),
            }));
            s.transition(
                State::FailedNeedsAttention,
                format!("要対応 / needs attention: {why}"),
                now,
            );
        })
        .await?;
        Ok(())
    }
}

/// One call to the gateway, for the attempt history: what, when, and how long.
#[derive(Debug, Clone, Copy)]
struct Try {
    action: &'static str,
    started: Timestamp,
    clock: Instant,
}

impl Try {
    fn start(action: &'static str) -> Try {
        Try {
            action,
            started: Timestamp::now(),
            clock: Instant::now(),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// The attempt record: `answered` when the gateway gave a usable answer.
    fn attempt(&self, outcome: impl Into<String>, answered: bool) -> Attempt {
        Attempt {
            action: self.action.into(),
            started_at: self.started,
            duration_ms: self.elapsed_ms(),
            outcome: outcome.into(),
            answered,
        }
    }
}

/// The two backlogs of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Sends,
    Polls,
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Send,
    Reconcile,
    Poll,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_jitters_and_honours_retry_after() {
        let i = Duration::from_secs(1);
        let m = Duration::from_secs(300);
        for failures in 1..=12u32 {
            let full = (i * 2u32.pow(failures - 1)).min(m);
            for _ in 0..50 {
                let d = backoff(i, m, failures, None);
                assert!(d >= full / 2 && d <= full, "{failures}: {d:?} vs {full:?}");
            }
        }
        assert!(backoff(i, m, 1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        // Jitter spreads retries: 50 draws are not all equal.
        let draws: HashSet<Duration> = (0..50).map(|_| backoff(i, m, 6, None)).collect();
        assert!(draws.len() > 1);
        // Absurd failure counts neither overflow nor exceed the cap.
        assert!(backoff(i, m, u32::MAX, None) <= m);
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_probes_and_closes() {
        let now = tokio::time::Instant::now;
        let mut b = Breaker::default();
        let t0 = now();
        // One dropped connection fails every request on it at once: not a gateway that is down.
        for _ in 0..BREAKER_TRIP_AFTER * 3 {
            b.failed(t0, t0);
            assert_eq!(
                b.permit(t0),
                Permit::Go,
                "a burst at one instant does not open it"
            );
        }
        b.answered();
        // Separate failures in a row open it.
        for _ in 0..BREAKER_TRIP_AFTER - 1 {
            b.failed(now(), now());
            assert_eq!(
                b.permit(now()),
                Permit::Go,
                "still closed below the threshold"
            );
            tokio::time::advance(BREAKER_SAME_EVENT).await;
        }
        let started_before = now();
        b.failed(now(), now());
        let t0 = now();
        assert!(b.is_open());
        assert_eq!(b.permit(t0), Permit::Wait, "open: nothing starts");
        assert_eq!(b.blocked_until(), Some(t0 + BREAKER_FIRST_PAUSE));
        // A late failure of a request sent before the breaker opened does not extend it.
        b.failed(t0, started_before);
        assert_eq!(b.blocked_until(), Some(t0 + BREAKER_FIRST_PAUSE));

        tokio::time::advance(BREAKER_FIRST_PAUSE).await;
        let t1 = now();
        assert_eq!(b.permit(t1), Permit::Probe(t1), "half-open: one probe");
        assert_eq!(b.permit(t1), Permit::Wait, "only one probe at a time");
        assert_eq!(b.blocked_until(), None, "waiting for the probe");
        // A request that started before the probe and fails now says nothing about the probe.
        b.failed(t1, started_before);
        assert_eq!(b.permit(t1), Permit::Wait, "still waiting for the probe");
        assert_eq!(b.blocked_until(), None);
        b.failed(t1, t1);
        assert_eq!(
            b.blocked_until(),
            Some(t1 + BREAKER_FIRST_PAUSE * 2),
            "a failed probe doubles the pause"
        );

        // A probe that never reached the gateway hands the turn to the next job.
        tokio::time::advance(BREAKER_FIRST_PAUSE * 2).await;
        let t2 = now();
        assert_eq!(b.permit(t2), Permit::Probe(t2));
        b.probe_ended(t2);
        assert_eq!(b.permit(t2), Permit::Probe(t2), "the next job probes");

        // The pause never exceeds the cap.
        b.failed(t2, t2);
        let mut t = t2;
        for _ in 0..10 {
            tokio::time::advance(BREAKER_MAX_PAUSE).await;
            t = now();
            assert_eq!(b.permit(t), Permit::Probe(t));
            b.failed(t, t);
        }
        assert_eq!(b.blocked_until(), Some(t + BREAKER_MAX_PAUSE));

        tokio::time::advance(BREAKER_MAX_PAUSE).await;
        assert_eq!(b.permit(now()), Permit::Probe(now()));
        b.answered();
        assert!(!b.is_open());
        assert_eq!(b.permit(now()), Permit::Go);
        assert_eq!(b.permit(now()), Permit::Go, "closed: no limit");
    }
}
