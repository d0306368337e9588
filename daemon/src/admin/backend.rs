//! `admin_ui::Backend` over the store: sessions and logins through the login desk, account
//! management through `accounts::manage`, and the read views of offices, submissions, notices
//! and returns, each filtered by what the principal's account may see.
//!
//! Invariant: the principal the UI passes in is only a handle: every call reads the account
//! and its session again from the store (a disabled account or a revoked session stops at
//! once), and every office-scoped read checks `Account::may_see` on the record's own office.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use admin_ui::help::code;
use admin_ui::{
    AccountView, ActionOutcome, AuditRow, Backend, BackendError, BackendResult, Choice, Client,
    Download, FindingView, ListPage, ListQuery, LogLine, LoginOutcome, NewAccount, NoticeDetail,
    NoticeRow, NoticeTable, OfficeRef, OfficeView, OneTimePassword, PAGE_SIZE, Principal,
    ReturnRow, SessionView, SubmissionDetail, SubmissionRow, SystemView, TimelineEntry,
};
use jiff::Timestamp;
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tracing::{error, warn};

use crate::accounts::login::{LoginDesk, LoginRefusal};
use crate::accounts::manage::{self, Actor, ManageError, NewAccountSpec};
use crate::accounts::offices::OfficeRecord;
use crate::accounts::sessions::{self, Session, SessionSettings};
use crate::accounts::{Account, Corporation, Role};
use crate::store::{NewAudit, Store};
use crate::timefmt::jst_minutes;

/// The daemon's side of the admin UI.
#[derive(Debug, Clone)]
pub struct AdminBackend {
    store: Store,
    desk: LoginDesk,
    sessions: SessionSettings,
    /// Told when offices change (the pipeline reloads them).
    pub offices_changed: Arc<Notify>,
    /// The window, the folders and the machine, for the home page.
    surroundings: Arc<super::dashboard::Surroundings>,
    /// Store work running at once: more browsers than this wait their turn instead of each
    /// taking a thread and its memory.
    store_slots: Arc<tokio::sync::Semaphore>,
    /// The backups, the signal that runs one now, and the daemon's stop (a restore chosen here
    /// restarts it; none in tests of other pages).
    backups: Option<(
        crate::backup::Backups,
        Arc<Notify>,
        tokio_util::sync::CancellationToken,
    )>,
    /// The alert settings and senders (none in tests of other pages).
    alerts: Option<Arc<super::alerts_page::AlertDesk>>,
}

/// Store calls the admin UI runs at once: two per core (at least four). A page's store work
/// is CPU-bound (a few milliseconds), so more in flight only adds threads and memory.
fn store_slot_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .max(4)
}

fn role_ui(r: Role) -> admin_ui::Role {
    match r {
        Role::SystemAdmin => admin_ui::Role::SystemAdmin,
        Role::Corporation => admin_ui::Role::Corporation,
        Role::Office => admin_ui::Role::Office,
        Role::Staff => admin_ui::Role::Staff,
    }
}

fn role_from_ui(r: admin_ui::Role) -> Role {
    match r {
        admin_ui::Role::SystemAdmin => Role::SystemAdmin,
        admin_ui::Role::Corporation => Role::Corporation,
        admin_ui::Role::Office => Role::Office,
        admin_ui::Role::Staff => Role::Staff,
    }
}

/// A session's identifier for pages and forms: derived from the stored hash, so it names the
/// session without being usable as (or leading to) its token.
fn session_id(s: &Session) -> String {
    hex::encode(&Sha256::digest(format!("session-id:{}", s.token_hash).as_bytes())[..10])
}

fn internal(what: &str, e: impl std::fmt::Display) -> BackendError {
    error!(error = %e, "管理画面の内部の処理でエラーが起きました (admin UI: {what})");
    BackendError::Internal
}

/// A login that could not be decided (not a refusal): the person sees an internal error,
/// the log names the entry that explains it.
fn login_failed(what: &str, e: crate::accounts::login::LoginError) -> BackendError {
    use crate::accounts::{login::LoginError, password::HashError};
    let c = match &e {
        LoginError::Hash(HashError::Unreadable) => code::ACCOUNTS_PASSWORD_HASH_UNREADABLE,
        LoginError::Store(_) => code::SYSTEM_STORE_FAILED,
        LoginError::Hash(HashError::Argon2(_)) | LoginError::Task(_) => code::SYSTEM_INTERNAL_ERROR,
    };
    error!(code = %c, error = %e, "ログインの処理でエラーが起きました (admin UI: {what})");
    BackendError::Internal
}

fn from_manage(e: ManageError) -> BackendError {
    match e {
        ManageError::Forbidden => BackendError::Forbidden,
        ManageError::NotFound(_) => BackendError::NotFound,
        ManageError::Invalid { code, ja, en } => BackendError::Invalid {
            code: Some(code),
            message_ja: ja,
            message_en: en,
        },
        other => internal("account operation failed", other),
    }
}

/// What a request's principal is, read again from the store.
struct Caller {
    account: Account,
    session: Session,
    corps: Vec<Corporation>,
}

impl Caller {
    fn may_see(&self, office: &str) -> bool {
        self.account.may_see(office, &self.corps)
    }

    fn actor(&self) -> Actor {
        Actor::Person {
            account: Box::new(self.account.clone()),
            address: Some(self.session.address.clone()),
        }
    }
}

impl AdminBackend {
    /// A backend over `store`.
    pub fn new(
        store: Store,
        desk: LoginDesk,
        sessions: SessionSettings,
        offices_changed: Arc<Notify>,
        surroundings: super::dashboard::Surroundings,
    ) -> AdminBackend {
        AdminBackend {
            store,
            desk,
            sessions,
            offices_changed,
            surroundings: Arc::new(surroundings),
            store_slots: Arc::new(tokio::sync::Semaphore::new(store_slot_count())),
            backups: None,
            alerts: None,
        }
    }

    /// Adds the alert screens' settings and the test button's senders.
    pub fn with_alerts(mut self, desk: Arc<super::alerts_page::AlertDesk>) -> Self {
        self.alerts = Some(desk);
        self
    }

    /// Adds the backups page's data and its "back up now".
    pub fn with_backups(
        mut self,
        backups: crate::backup::Backups,
        run_now: Arc<Notify>,
        restart: tokio_util::sync::CancellationToken,
    ) -> Self {
        self.backups = Some((backups, run_now, restart));
        self
    }

    /// The caller, when it is the system administrator.
    async fn admin_caller(&self, p: &Principal) -> BackendResult<Caller> {
        let p = p.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            if c.account.role != Role::SystemAdmin {
                return Err(BackendError::Forbidden);
            }
            Ok(c)
        })
        .await
    }

    #[allow(clippy::type_complexity)]
    fn backups_or_none(
        &self,
    ) -> BackendResult<&(
        crate::backup::Backups,
        Arc<Notify>,
        tokio_util::sync::CancellationToken,
    )> {
        self.backups.as_ref().ok_or(BackendError::NotFound)
    }

    /// Runs store work on a blocking thread, once one of the store slots is free.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> BackendResult<T> + Send + 'static,
    ) -> BackendResult<T> {
        let store = self.store.clone();
        let slot = self
            .store_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| internal("store slots closed", e))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            f(&store)
        })
        .await
        .map_err(|e| internal("task failed", e))?
    }

    /// The caller behind a principal: its session must still exist and its account be
    /// enabled.
    fn caller(store: &Store, p: &Principal) -> BackendResult<Caller> {
        let account = store
            .account(&p.account_id)
            .map_err(|e| internal("read account", e))?
            .filter(|a| !a.disabled)
            .ok_or(BackendError::Forbidden)?;
        let session = store
            .sessions_of(&account.id)
            .map_err(|e| internal("read sessions", e))?
            .into_iter()
            .find(|s| session_id(s) == p.session_id)
            .ok_or(BackendError::Forbidden)?;
        let corps = store
            .corporations()
            .map_err(|e| internal("read corporations", e))?;
        Ok(Caller {
            account,
            session,
            corps,
        })
    }

    fn visible_offices(store: &Store, c: &Caller) -> BackendResult<Vec<OfficeRecord>> {
        Ok(store
            .office_records()
            .map_err(|e| internal("read offices", e))?
            .into_iter()
            .filter(|o| c.may_see(&o.office_number))
            .collect())
    }

    fn principal(store: &Store, account: Account, session: Session) -> BackendResult<Principal> {
        let corps = store
            .corporations()
            .map_err(|e| internal("read corporations", e))?;
        let c = Caller {
            account,
            session,
            corps,
        };
        let offices: Vec<OfficeRef> = Self::visible_offices(store, &c)?
            .into_iter()
            .map(|o| OfficeRef {
                number: o.office_number,
                name: o.name,
            })
            .collect();
        let current = c
            .session
            .current_office
            .as_ref()
            .and_then(|n| offices.iter().find(|o| &o.number == n))
            .or(offices.first())
            .cloned();
        let role = c.account.role;
        Ok(Principal {
            account_id: c.account.id.clone(),
            display_name: c.account.display_name.clone(),
            role: role_ui(role),
            must_change_password: c.account.must_change_password,
            csrf_token: c.session.csrf_token.clone(),
            session_id: session_id(&c.session),
            offices,
            current_office: current,
            may_manage_accounts: matches!(
                role,
                Role::SystemAdmin | Role::Corporation | Role::Office
            ),
            is_admin: role == Role::SystemAdmin,
        })
    }

    fn account_view(
        store: &Store,
        a: &Account,
        c: &Caller,
        offices: &[OfficeRecord],
    ) -> AccountView {
        let _ = store;
        let office_ref = |n: &str| OfficeRef {
            number: n.to_owned(),
            name: offices
                .iter()
                .find(|o| o.office_number == n)
                .map(|o| o.name.clone())
                .unwrap_or_default(),
        };
        let now = Timestamp::now();
        AccountView {
            id: a.id.clone(),
            display_name: a.display_name.clone(),
            role: role_ui(a.role),
            role_ja: a.role.label_ja().to_owned(),
            corporation: a.corporation.clone(),
            office: a.office_number.as_deref().map(office_ref),
            grants: a.grants.iter().map(|g| office_ref(g)).collect(),
            locked_until: a
                .lockout
                .locked_until
                .filter(|_| a.lockout.is_locked(now))
                .map(jst_minutes),
            disabled: a.disabled,
            must_change_password: a.must_change_password,
            password_changed_at: jst_minutes(a.password_changed_at),
            manageable: c.account.may_manage(a, &c.corps),
        }
    }

    fn audit(store: &Store, c: &Caller, action: &str, target: &str, detail: String) {
        if let Err(e) = store.audit(NewAudit {
            actor: Some(c.account.id.clone()),
            address: Some(c.session.address.clone()),
            action: action.into(),
            target: Some(target.to_owned()),
            detail,
        }) {
            warn!(error = %e, action, "監査ログに書き込めませんでした (cannot write the audit log)");
        }
    }
}

fn office_view(o: &OfficeRecord) -> OfficeView {
    let now = Timestamp::now();
    OfficeView {
        number: o.office_number.clone(),
        name: o.name.clone(),
        federation_user_id: o.federation_user_id.clone(),
        corporation: o.corporation.clone(),
        status: if o.ended_from_month.is_some() {
            "ended".into()
        } else {
            "active".into()
        },
        ended_from_month: o.ended_from_month.map(|m| m.to_string()),
        successor: o.successor.clone(),
        certificate_subject: o.certificate.as_ref().map(|c| c.subject.clone()),
        certificate_expires: o.certificate.as_ref().map(|c| jst_minutes(c.not_after)),
        certificate_days_left: o
            .certificate
            .as_ref()
            .map(|c| c.not_after.duration_since(now).as_secs() / 86_400),
    }
}

fn submission_row(s: &crate::submission::Submission) -> SubmissionRow {
    SubmissionRow {
        id: s.id.to_string(),
        file_name: s.file_name.clone(),
        office_number: s.office_number.as_ref().map(|o| o.to_string()),
        processing_month: s.processing_month.map(|m| m.to_string()),
        state: s.state.as_str().to_owned(),
        state_ja: s.state.label_ja().to_owned(),
        state_en: s.state.label_en().to_owned(),
        receipt_id: s.receipt.as_ref().map(|r| r.receipt_id.clone()),
        reception_mark: s.reception.as_ref().and_then(|r| r.mark.clone()),
        taken_at: jst_minutes(s.taken_at),
        resendable: resendable(s),
        withdrawable: withdrawable(s),
    }
}

/// A person may send it again: it stopped for a reason a person fixes (credentials, the
/// certificate, a refusal of the gateway) before the federation had it.
fn resendable(s: &crate::submission::Submission) -> bool {
    s.state == crate::submission::State::FailedNeedsAttention && s.receipt.is_none()
}

/// Queues a file that needed a person again, when it still is resendable; true when it did.
fn requeue(sub: &mut crate::submission::Submission, who: &str, now: Timestamp) -> bool {
    if !resendable(sub) {
        return false;
    }
    sub.note = None;
    sub.next_action_at = None;
    sub.transition(
        crate::submission::State::Queued,
        format!("{who} が再送を指示 / sent again at {who}'s request"),
        now,
    );
    true
}

/// It may be withdrawn (取消): the federation has it (a receipt), and it is neither withdrawn
/// nor rejected (a rejected file is not there to withdraw).
fn withdrawable(s: &crate::submission::Submission) -> bool {
    use crate::submission::State;
    s.receipt.is_some() && !matches!(s.state, State::Withdrawn | State::Rejected)
}

/// The kinds a notice list filters by: the kinds the appliance reads, then everything else.
fn notice_kind_choices() -> Vec<Choice> {
    let mut out: Vec<Choice> = crate::notice::KINDS
        .iter()
        .map(|k| Choice {
            value: k.id.to_owned(),
            label_ja: format!("{} {}", k.id, k.title_ja),
            label_en: format!("{} {}", k.id, k.title_en),
        })
        .collect();
    out.push(Choice {
        value: OTHER_KIND.into(),
        label_ja: "そのほか（PDF・お知らせ）".into(),
        label_en: "others (PDF, text)".into(),
    });
    out
}

/// Marks a notice read for the caller; a failure only costs the mark, so it is logged.
fn mark_read(s: &Store, c: &Caller, notice_id: &str) {
    if let Err(e) = s.mark_notice_read(&c.account.id, notice_id, Timestamp::now()) {
        warn!(notice = notice_id, error = %e, "通知文書を開いたことを記録できませんでした (cannot record that a notice was read)");
    }
}

/// The kind filter value for notices of no kind the appliance reads.
const OTHER_KIND: &str = "other";

/// How long the admin UI waits for the withdraw desk (which may retry the gateway).
const WITHDRAW_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn month_filter(q: &ListQuery) -> BackendResult<Option<crate::claim::Month>> {
    q.month
        .as_deref()
        .map(|m| {
            m.parse::<crate::claim::Month>()
                .map_err(|_| BackendError::Invalid {
                    code: Some(code::LIST_FILTER_INVALID),
                    message_ja: format!("{m} は年月（YYYYMM）として読めません。"),
                    message_en: format!("{m} is not a month (YYYYMM)."),
                })
        })
        .transpose()
}

fn return_row(i: &crate::returns::ReturnItem) -> ReturnRow {
    ReturnRow {
        id: i.id.clone(),
        office_number: i.office_number.clone(),
        insured_number: i.row.insured_number.clone(),
        insured_name: i.row.name_kana.clone(),
        processing_month: i.processing_month.to_string(),
        form: i.row.form.clone(),
        form_ja: form_ja(&i.row.form).to_owned(),
        form_en: form_en(&i.row.form).to_owned(),
        insurer_number: i.row.insurer_number.clone(),
        notice_id: i.notice_id.clone(),
        service_month: i
            .row
            .service_month
            .map(|m| m.to_string())
            .unwrap_or_default(),
        reason_code: i.row.reason_code.clone(),
        content: i.row.content.clone(),
        status: i.status.as_str().to_owned(),
        status_ja: i.status.label_ja().to_owned(),
        status_en: i.status.label_en().to_owned(),
        linked_submission: i.linked_submission.as_ref().map(|s| s.to_string()),
        note: i.note.clone(),
    }
}

fn audit_row(e: crate::store::AuditEntry) -> AuditRow {
    AuditRow {
        seq: e.seq,
        at: jst_minutes(e.at),
        actor: e.actor,
        address: e.address,
        action: e.action,
        target: e.target,
        detail: e.detail,
    }
}

/// 種別 in English.
fn form_en(form: &str) -> &'static str {
    match form {
        "請" => "claim statement",
        "給" => "care plan (給付管理票)",
        "サ" => "care-plan fee statement",
        _ => "unknown",
    }
}

/// 種別 in words.
fn form_ja(form: &str) -> &'static str {
    match form {
        "請" => "請求明細書",
        "給" => "給付管理票",
        "サ" => "計画費明細書",
        _ => "不明",
    }
}

fn notice_row(n: &crate::store::NoticeRecord, unread: bool) -> NoticeRow {
    NoticeRow {
        id: n.notice_id.clone(),
        office_number: n.office_number.clone(),
        kind_id: n.kind_id.clone(),
        title: n.title.clone(),
        processing_month: n.processing_month.clone(),
        media_type: n.media_type.clone(),
        size: n.size,
        received_at: jst_minutes(n.received_at),
        kind_ja: crate::notice::kind(&n.kind_id)
            .map(|k| k.title_ja.to_owned())
            .unwrap_or_default(),
        unread,
        inline: n.media_type.starts_with("application/pdf")
            || n.media_type.starts_with("text/plain"),
    }
}

/// A notice's rows as tables, one per record type (H1, D1, T1…) in file order.
fn notice_tables(parsed: &crate::notice::Parsed) -> Vec<NoticeTable> {
    let mut tables: Vec<(String, NoticeTable)> = Vec::new();
    for row in &parsed.rows {
        let columns: Vec<String> = row.cells.iter().map(|(c, _)| c.clone()).collect();
        let values: Vec<String> = row.cells.iter().map(|(_, v)| v.clone()).collect();
        match tables
            .iter_mut()
            .find(|(r, t)| r == &row.record && t.columns == columns)
        {
            Some((_, t)) => t.rows.push(values),
            None => tables.push((
                row.record.clone(),
                NoticeTable {
                    title: record_title(&row.record),
                    columns,
                    rows: vec![values],
                },
            )),
        }
    }
    tables.into_iter().map(|(_, t)| t).collect()
}

fn record_title(record: &str) -> String {
    let kind = match record.chars().next() {
        Some('H') => "ヘッダ / header",
        Some('D') => "明細 / details",
        Some('T') => "合計 / totals",
        _ => "レコード / records",
    };
    format!("{kind}（{record}）")
}

fn download_name(n: &crate::store::NoticeRecord, utf8: bool) -> String {
    let ext = if n.media_type.starts_with("application/pdf") {
        "pdf"
    } else if n.media_type.starts_with("text/csv") {
        "csv"
    } else {
        "txt"
    };
    let suffix = if utf8 { "-utf8" } else { "" };
    format!(
        "{}_{}_{}_{}{suffix}.{ext}",
        n.office_number, n.processing_month, n.kind_id, n.notice_id
    )
}

impl Backend for AdminBackend {
    async fn login(
        &self,
        id: &str,
        password: &str,
        client: &Client,
    ) -> BackendResult<LoginOutcome> {
        let outcome = self
            .desk
            .login(id, password, client.address)
            .await
            .map_err(|e| login_failed("login", e))?;
        match outcome {
            Ok(logged_in) => {
                let (account_id, address, agent) = (
                    logged_in.account.id.clone(),
                    client.address.to_string(),
                    client.user_agent.clone(),
                );
                let (token, _) = self
                    .blocking(move |s| {
                        sessions::issue(s, &account_id, &address, &agent, Timestamp::now())
                            .map_err(|e| internal("issue session", e))
                    })
                    .await?;
                Ok(LoginOutcome::LoggedIn {
                    token,
                    must_change_password: logged_in.must_change_password,
                })
            }
            Err(refusal @ LoginRefusal::Throttled(_)) => Ok(LoginOutcome::Throttled {
                code: Some(refusal.code()),
                message_ja: refusal.message_ja(),
                message_en: refusal.message_en(),
            }),
            Err(refusal) => Ok(LoginOutcome::Refused {
                code: Some(refusal.code()),
                message_ja: refusal.message_ja(),
                message_en: refusal.message_en(),
            }),
        }
    }

    async fn session(&self, token: &str) -> BackendResult<Option<Principal>> {
        let token = token.to_owned();
        let settings = self.sessions;
        self.blocking(move |s| {
            let session = match sessions::check(s, &token, Timestamp::now(), &settings)
                .map_err(|e| internal("check session", e))?
            {
                Ok(session) => session,
                Err(_) => return Ok(None),
            };
            let Some(account) = s
                .account(&session.account_id)
                .map_err(|e| internal("read account", e))?
                .filter(|a| !a.disabled)
            else {
                return Ok(None);
            };
            Self::principal(s, account, session).map(Some)
        })
        .await
    }

    async fn logout(&self, p: &Principal) -> BackendResult<()> {
        let p = p.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            s.remove_sessions(vec![c.session.token_hash.clone()])
                .map_err(|e| internal("logout", e))?;
            Self::audit(s, &c, "logout", &c.account.id, String::new());
            Ok(())
        })
        .await
    }

    async fn change_password(&self, p: &Principal, old: &str, new: &str) -> BackendResult<()> {
        let p2 = p.clone();
        let c = self.blocking(move |s| Self::caller(s, &p2)).await?;
        let address: IpAddr = c
            .session
            .address
            .parse()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        // The old password is checked like a login: throttled, and failures count towards
        // the lockout.
        match self
            .desk
            .login(&c.account.id, old, address)
            .await
            .map_err(|e| login_failed("verify password", e))?
        {
            Ok(_) => {}
            Err(LoginRefusal::Throttled(d)) => {
                return Err(BackendError::Invalid {
                    code: Some(code::ACCOUNTS_LOGIN_THROTTLED),
                    message_ja: LoginRefusal::Throttled(d).message_ja(),
                    message_en: LoginRefusal::Throttled(d).message_en(),
                });
            }
            Err(LoginRefusal::Denied) => {
                return Err(BackendError::Invalid {
                    code: Some(code::ACCOUNTS_PASSWORD_WRONG_CURRENT),
                    message_ja: "今のパスワードが違います。".into(),
                    message_en: "The current password is wrong.".into(),
                });
            }
        }
        let new = new.to_owned();
        self.blocking(move |s| {
            let keep = c.session.token_hash.clone();
            manage::set_password(
                s,
                &c.actor(),
                &c.account.id,
                &new,
                false,
                Some(&keep),
                Timestamp::now(),
            )
            .map(|_| ())
            .map_err(from_manage)
        })
        .await
    }

    async fn change_password_at_login(
        &self,
        id: &str,
        old: &str,
        new: &str,
        client: &Client,
    ) -> BackendResult<()> {
        let logged = self
            .desk
            .login(id, old, client.address)
            .await
            .map_err(|e| login_failed("verify password", e))?;
        let account = match logged {
            Ok(l) => l.account,
            Err(r) => {
                return Err(BackendError::Invalid {
                    code: Some(r.code()),
                    message_ja: r.message_ja(),
                    message_en: r.message_en(),
                });
            }
        };
        let new = new.to_owned();
        let address = client.address.to_string();
        self.blocking(move |s| {
            let actor = Actor::Person {
                account: Box::new(account.clone()),
                address: Some(address),
            };
            manage::set_password(s, &actor, &account.id, &new, false, None, Timestamp::now())
                .map(|_| ())
                .map_err(from_manage)
        })
        .await
    }

    async fn switch_office(&self, p: &Principal, office: &str) -> BackendResult<()> {
        let (p, office) = (p.clone(), office.trim().to_owned());
        self.blocking(move |s| {
            let mut c = Self::caller(s, &p)?;
            let known = s
                .office_record(&office)
                .map_err(|e| internal("read office", e))?
                .is_some();
            if !known || !c.may_see(&office) {
                return Err(BackendError::NotFound);
            }
            c.session.current_office = Some(office);
            s.put_session(c.session)
                .map_err(|e| internal("switch office", e))
        })
        .await
    }

    async fn ca_certificate(&self) -> Option<admin_ui::CaCertificate> {
        self.surroundings.ca.clone()
    }

    async fn health_check(&self) -> admin_ui::HealthCheck {
        let (store, surroundings) = (self.store.clone(), self.surroundings.clone());
        match tokio::task::spawn_blocking(move || {
            super::metrics::health_check(&store, &surroundings)
        })
        .await
        {
            Ok(h) => h,
            Err(e) => {
                error!(error = %e, "管理画面で装置の状態を調べられませんでした (admin UI: health check failed)");
                admin_ui::HealthCheck {
                    ok: false,
                    checks: vec![],
                }
            }
        }
    }

    async fn metrics(
        &self,
        client: &Client,
        bearer: Option<&str>,
    ) -> BackendResult<Vec<admin_ui::MetricFamily>> {
        if !super::metrics::may_read(&self.surroundings, client, bearer) {
            warn!(address = %client.address, "装置の外から正しいトークンなしでメトリクスを読もうとしたため、断りました (metrics refused: not loopback and no valid token)");
            return Err(BackendError::Forbidden);
        }
        let surroundings = self.surroundings.clone();
        self.blocking(move |s| {
            super::metrics::families(s, &surroundings).map_err(|e| internal("read metrics", e))
        })
        .await
    }

    async fn dashboard(&self, p: &Principal) -> BackendResult<admin_ui::Dashboard> {
        use super::dashboard as d;
        let p = p.clone();
        let surroundings = self.surroundings.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let window = surroundings.window.borrow().clone();
            let health = surroundings.health();
            let offices = Self::visible_offices(s, &c)?;
            let mut visible = Vec::with_capacity(offices.len());
            for o in &offices {
                visible.push(d::VisibleOffice {
                    number: o.office_number.clone(),
                    name: o.name.clone(),
                    submissions: s
                        .office_submissions(&o.office_number, None)
                        .map_err(|e| internal("read submissions", e))?,
                    returns: s
                        .office_returns(&o.office_number, None)
                        .map_err(|e| internal("read returns", e))?,
                    new_notices: 0,
                });
            }
            // The month is the gateway's; before its first answer, the latest month sent.
            let month = window.as_ref().map(|w| w.processing_month).or_else(|| {
                visible
                    .iter()
                    .flat_map(|o| o.submissions.iter().filter_map(|s| s.processing_month))
                    .max()
            });
            if let Some(m) = month {
                for o in &mut visible {
                    for mm in d::unread_months(m) {
                        o.new_notices += s
                            .unread_count(&o.number, mm, &c.account.id)
                            .map_err(|e| internal("count unread notices", e))?;
                    }
                }
            }
            let (summaries, months) = d::summarize(&visible, month);
            let certificates: Vec<(String, String, i64)> = offices
                .iter()
                .filter(|o| o.ended_from_month.is_none())
                .filter_map(|o| {
                    office_view(o)
                        .certificate_days_left
                        .map(|days| (o.office_number.clone(), o.name.clone(), days))
                })
                .collect();
            let stored = crate::alerts::current(s).map_err(|e| internal("read alerts", e))?;
            let alerts = d::alerts(
                &stored,
                |o| c.may_see(o),
                c.account.role == Role::SystemAdmin,
                &certificates,
                &summaries,
                &health,
            );
            let held = summaries.iter().map(|o| o.held).sum();
            Ok(admin_ui::Dashboard {
                window: window.as_ref().map(|w| d::window_view(w, held)),
                offices: summaries,
                alerts,
                health,
                months,
            })
        })
        .await
    }

    async fn sessions(&self, p: &Principal) -> BackendResult<Vec<SessionView>> {
        let p = p.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let mut list = s
                .sessions_of(&c.account.id)
                .map_err(|e| internal("read sessions", e))?;
            list.sort_by_key(|x| std::cmp::Reverse(x.last_seen_at));
            Ok(list
                .iter()
                .map(|x| SessionView {
                    id: session_id(x),
                    created_at: jst_minutes(x.created_at),
                    last_seen_at: jst_minutes(x.last_seen_at),
                    address: x.address.clone(),
                    user_agent: x.user_agent.clone(),
                    current: x.token_hash == c.session.token_hash,
                })
                .collect())
        })
        .await
    }

    async fn revoke_session(&self, p: &Principal, id: &str) -> BackendResult<()> {
        let (p, id) = (p.clone(), id.to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let target = s
                .sessions_of(&c.account.id)
                .map_err(|e| internal("read sessions", e))?
                .into_iter()
                .find(|x| session_id(x) == id)
                .ok_or(BackendError::NotFound)?;
            s.remove_sessions(vec![target.token_hash])
                .map_err(|e| internal("revoke session", e))?;
            Self::audit(
                s,
                &c,
                "session_revoked",
                &c.account.id,
                format!("{} のセッションを終了 / session ended", target.address),
            );
            Ok(())
        })
        .await
    }

    async fn accounts(&self, p: &Principal) -> BackendResult<Vec<AccountView>> {
        let p = p.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            if c.account.role == Role::Staff {
                return Err(BackendError::Forbidden);
            }
            let offices = s
                .office_records()
                .map_err(|e| internal("read offices", e))?;
            Ok(s.accounts()
                .map_err(|e| internal("read accounts", e))?
                .iter()
                .filter(|a| {
                    c.account.id.eq_ignore_ascii_case(&a.id) || c.account.may_manage(a, &c.corps)
                })
                .map(|a| Self::account_view(s, a, &c, &offices))
                .collect())
        })
        .await
    }

    async fn account(&self, p: &Principal, id: &str) -> BackendResult<AccountView> {
        let (p, id) = (p.clone(), id.to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            if c.account.role == Role::Staff {
                return Err(BackendError::Forbidden);
            }
            let a = s
                .account(&id)
                .map_err(|e| internal("read account", e))?
                .filter(|a| {
                    c.account.id.eq_ignore_ascii_case(&a.id) || c.account.may_manage(a, &c.corps)
                })
                .ok_or(BackendError::NotFound)?;
            let offices = s
                .office_records()
                .map_err(|e| internal("read offices", e))?;
            Ok(Self::account_view(s, &a, &c, &offices))
        })
        .await
    }

    async fn create_account(
        &self,
        p: &Principal,
        new: NewAccount,
    ) -> BackendResult<OneTimePassword> {
        let p = p.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            if c.account.role == Role::Staff {
                return Err(BackendError::Forbidden);
            }
            let spec = NewAccountSpec {
                id: new.id,
                display_name: new.display_name,
                role: new.role.map(role_from_ui),
                office: new.office,
                grants: new.grants.into_iter().collect::<BTreeSet<_>>(),
                corporation: None,
                corporation_name: new.corporation_name,
                corporation_offices: new.corporation_offices.into_iter().collect(),
            };
            let (account, password) =
                manage::create(s, &c.actor(), spec, Timestamp::now()).map_err(from_manage)?;
            Ok(OneTimePassword {
                account_id: account.id,
                password,
            })
        })
        .await
    }

    async fn reset_password(&self, p: &Principal, id: &str) -> BackendResult<OneTimePassword> {
        let (p, id) = (p.clone(), id.to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let (account, password) = manage::reset_password(s, &c.actor(), &id, Timestamp::now())
                .map_err(from_manage)?;
            Ok(OneTimePassword {
                account_id: account.id,
                password,
            })
        })
        .await
    }

    async fn unlock(&self, p: &Principal, id: &str) -> BackendResult<()> {
        let (p, id) = (p.clone(), id.to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            manage::unlock(s, &c.actor(), &id)
                .map(|_| ())
                .map_err(from_manage)
        })
        .await
    }

    async fn set_grants(&self, p: &Principal, id: &str, offices: Vec<String>) -> BackendResult<()> {
        let (p, id) = (p.clone(), id.to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            manage::set_grants(s, &c.actor(), &id, offices.into_iter().collect())
                .map(|_| ())
                .map_err(from_manage)
        })
        .await
    }

    async fn set_disabled(&self, p: &Principal, id: &str, disabled: bool) -> BackendResult<()> {
        let (p, id) = (p.clone(), id.to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            manage::set_disabled(s, &c.actor(), &id, disabled)
                .map(|_| ())
                .map_err(from_manage)
        })
        .await
    }

    async fn offices(&self, p: &Principal) -> BackendResult<Vec<OfficeView>> {
        let p = p.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            Ok(Self::visible_offices(s, &c)?
                .iter()
                .map(office_view)
                .collect())
        })
        .await
    }

    async fn office(&self, p: &Principal, number: &str) -> BackendResult<OfficeView> {
        let (p, number) = (p.clone(), number.to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let o = s
                .office_record(&number)
                .map_err(|e| internal("read office", e))?
                .filter(|o| c.may_see(&o.office_number))
                .ok_or(BackendError::NotFound)?;
            Ok(office_view(&o))
        })
        .await
    }

    async fn submissions(
        &self,
        p: &Principal,
        q: &ListQuery,
    ) -> BackendResult<ListPage<SubmissionRow>> {
        let (p, q) = (p.clone(), q.clone());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            if !c.may_see(&q.office) {
                return Err(BackendError::NotFound);
            }
            let month = month_filter(&q)?;
            let state = q.status.as_deref().map(crate::submission::State::from_name);
            let mut subs = s
                .submissions_of(&q.office, month)
                .map_err(|e| internal("read submissions", e))?;
            subs.retain(|sub| state.is_none_or(|st| Some(sub.state) == st));
            subs.sort_by_key(|s| std::cmp::Reverse(s.taken_at));
            let rows = subs.iter().map(submission_row).collect();
            let mut page = ListPage::cut(rows, q.page);
            let mut months: Vec<String> = s
                .office_submissions(&q.office, None)
                .map_err(|e| internal("read submissions", e))?
                .into_iter()
                .filter_map(|x| x.processing_month.map(|m| m.to_string()))
                .collect();
            months.dedup();
            months.reverse();
            page.months = months.iter().map(|m| Choice::month(m)).collect();
            page.statuses = crate::submission::State::ALL
                .iter()
                .map(|st| Choice {
                    value: st.as_str().to_owned(),
                    label_ja: st.label_ja().to_owned(),
                    label_en: st.label_en().to_owned(),
                })
                .collect();
            Ok(page)
        })
        .await
    }

    async fn resend(&self, p: &Principal, id: &str) -> BackendResult<ActionOutcome> {
        let (p, id) = (p.clone(), id.to_owned());
        let wake = self.surroundings.relay_wakeup.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let sid = crate::submission::SubmissionId::from_string(id);
            let sub = s
                .get(&sid)
                .map_err(|e| internal("read submission", e))?
                .filter(|sub| {
                    sub.office_number
                        .as_ref()
                        .is_some_and(|o| c.may_see(&o.to_string()))
                })
                .ok_or(BackendError::NotFound)?;
            if !resendable(&sub) {
                return Ok(ActionOutcome {
                    code: Some(code::RELAY_RESEND_NOT_ALLOWED),
                    done: false,
                    message_ja: format!(
                        "この請求ファイルは「{}」のため、もう一度送信する操作はできません。",
                        sub.state.label_ja()
                    ),
                    message_en: format!(
                        "This file is {}; sending it again is not possible.",
                        sub.state.label_en()
                    ),
                });
            }
            let who = c.account.id.clone();
            let now = Timestamp::now();
            let updated = s
                .update(&sid, move |sub| {
                    // Checked again inside the write: the relay may have moved it meanwhile.
                    requeue(sub, &who, now);
                })
                .map_err(|e| internal("resend submission", e))?;
            if updated.state != crate::submission::State::Queued {
                return Ok(ActionOutcome {
                    code: Some(code::RELAY_STATE_CHANGED),
                    done: false,
                    message_ja: "状態が変わったため、再送しませんでした。画面を確認してください。"
                        .into(),
                    message_en: "Its state changed meanwhile; nothing was done.".into(),
                });
            }
            Self::audit(
                s,
                &c,
                "submission_resent",
                sid.as_str(),
                format!("{} {}", updated.file_name, updated.office_number.as_ref().map(|o| o.to_string()).unwrap_or_default()),
            );
            tracing::info!(submission = %sid, account = %c.account.id, "submission queued again from the admin UI");
            // Sent now, not at the relay's next look.
            wake.notify_one();
            Ok(ActionOutcome {
                code: Some(code::RELAY_RESENT),
                done: true,
                message_ja: "送信待ちに戻しました。まもなく送信されます。".into(),
                message_en: "Queued again; it will be sent shortly.".into(),
            })
        })
        .await
    }

    async fn withdraw(&self, p: &Principal, id: &str) -> BackendResult<ActionOutcome> {
        let (p2, id) = (p.clone(), id.to_owned());
        let (receipt, account) = self
            .blocking(move |s| {
                let c = Self::caller(s, &p2)?;
                let sub = s
                    .get(&crate::submission::SubmissionId::from_string(id))
                    .map_err(|e| internal("read submission", e))?
                    .filter(|sub| {
                        sub.office_number
                            .as_ref()
                            .is_some_and(|o| c.may_see(&o.to_string()))
                    })
                    .ok_or(BackendError::NotFound)?;
                if !withdrawable(&sub) {
                    return Err(BackendError::Invalid {
                        code: Some(code::WITHDRAW_NOT_ALLOWED),
                        message_ja: format!(
                            "この請求ファイルは「{}」のため、取り消せません。",
                            sub.state.label_ja()
                        ),
                        message_en: format!(
                            "This file is {}; it cannot be withdrawn.",
                            sub.state.label_en()
                        ),
                    });
                }
                let receipt = sub
                    .receipt
                    .map(|r| r.receipt_id)
                    .filter(|r| crate::withdraw::valid_receipt_id(r))
                    .ok_or(BackendError::Internal)?;
                Ok((receipt, c.account.id.clone()))
            })
            .await?;
        // The daemon's withdraw desk talks to the gateway; this waits for its answer on a
        // thread of its own, not holding a store slot.
        let state_dir = self.surroundings.state_dir.clone();
        let asked = receipt.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            crate::withdraw::request_from_daemon(&state_dir, &asked, WITHDRAW_WAIT)
        })
        .await
        .map_err(|e| internal("withdraw task", e))?;
        match outcome {
            Ok(o) => {
                tracing::info!(receipt = %receipt, account = %account, withdrawn = o.withdrawn, "withdrawal asked from the admin UI");
                let (p, receipt, done) = (p.clone(), receipt.clone(), o.withdrawn);
                let detail = o.message_ja.clone();
                self.blocking(move |s| {
                    let c = Self::caller(s, &p)?;
                    Self::audit(
                        s,
                        &c,
                        if done {
                            "submission_withdrawn"
                        } else {
                            "submission_withdraw_refused"
                        },
                        &receipt,
                        detail,
                    );
                    Ok(())
                })
                .await?;
                Ok(ActionOutcome {
                    code: o.code.as_deref().and_then(admin_ui::help::known),
                    done: o.withdrawn,
                    message_ja: o.message_ja,
                    message_en: o.message_en,
                })
            }
            Err(e) => {
                error!(receipt = %receipt, error = format!("{e:#}"), "取消の処理から応答がありませんでした (the withdraw desk did not answer)");
                Ok(ActionOutcome {
                    code: Some(code::WITHDRAW_TIMEOUT),
                    done: false,
                    message_ja: "取消の処理が時間内に終わりませんでした。しばらくしてから画面を確認し、取り消されていなければもう一度押してください。".into(),
                    message_en: "The withdrawal did not finish in time. Check again shortly and press again if it is not withdrawn.".into(),
                })
            }
        }
    }

    async fn submission(&self, p: &Principal, id: &str) -> BackendResult<SubmissionDetail> {
        let (p, id) = (p.clone(), id.to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let sub = s
                .get(&crate::submission::SubmissionId::from_string(id))
                .map_err(|e| internal("read submission", e))?
                .ok_or(BackendError::NotFound)?;
            let visible = match &sub.office_number {
                Some(o) => c.may_see(&o.to_string()),
                // A file whose office could not be read is the administrator's to see.
                None => c.account.role == Role::SystemAdmin,
            };
            if !visible {
                return Err(BackendError::NotFound);
            }
            let finding = |f: &crate::claim::Finding| FindingView {
                severity: match f.severity {
                    crate::claim::Severity::Error => "error".into(),
                    crate::claim::Severity::Warning => "warning".into(),
                },
                code: f.code.clone(),
                record_no: f.record_no,
                item_no: f.item_no,
                message_ja: f.message_ja.clone(),
                message_en: f.message_en.clone(),
            };
            Ok(SubmissionDetail {
                row: submission_row(&sub),
                sha256: sub.sha256.clone(),
                size: sub.size_bytes,
                send_name: sub.send_name.clone(),
                note_ja: sub.note.as_ref().map(|n| n.ja.clone()),
                note_en: sub.note.as_ref().map(|n| n.en.clone()),
                note_code: sub.note.as_ref().and_then(|n| n.code.clone()),
                timeline: sub
                    .history
                    .iter()
                    .map(|t| TimelineEntry {
                        at: jst_minutes(t.at),
                        state_ja: t.state.label_ja().to_owned(),
                        detail: t.reason.clone(),
                    })
                    .collect(),
                findings: sub.findings.iter().map(finding).collect(),
                // The federation's own reasons, 到達 then 受付, each under its catalogue code.
                reception_errors: sub
                    .receipt
                    .iter()
                    .flat_map(|r| r.arrival_errors.iter())
                    .chain(sub.reception.iter().flat_map(|r| r.errors.iter()))
                    .map(|e| FindingView {
                        severity: "error".into(),
                        // An unknown code keeps its name; its link goes to `gateway.other`.
                        code: format!("gateway.{}", e.code),
                        record_no: e.record_no,
                        item_no: None,
                        message_ja: e.message.clone(),
                        message_en: e.message.clone(),
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn notices(&self, p: &Principal, q: &ListQuery) -> BackendResult<ListPage<NoticeRow>> {
        let (p, q) = (p.clone(), q.clone());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            if !c.may_see(&q.office) {
                return Err(BackendError::NotFound);
            }
            let month = month_filter(&q)?;
            let kind = q.kind.clone();
            let keep = move |n: &crate::store::NoticeRecord| match kind.as_deref() {
                None => true,
                Some(OTHER_KIND) => crate::notice::kind(&n.kind_id).is_none(),
                Some(k) => n.kind_id == k,
            };
            let page_no = q.page.unwrap_or(1).max(1);
            let (skip, take) = match q.page {
                Some(_) => ((page_no - 1) * PAGE_SIZE, PAGE_SIZE),
                None => (0, usize::MAX),
            };
            let reader = c.account.id.clone();
            let found = s
                .notice_page(
                    &q.office,
                    month,
                    q.kind
                        .is_some()
                        .then_some(&keep as &dyn Fn(&crate::store::NoticeRecord) -> bool),
                    q.unread_only.then_some(reader.as_str()),
                    &reader,
                    skip,
                    take,
                )
                .map_err(|e| internal("read notices", e))?;
            let pages = found.total.div_ceil(PAGE_SIZE).max(1);
            let rows = found
                .rows
                .iter()
                .zip(found.unread.iter())
                .map(|(n, unread)| notice_row(n, *unread))
                .collect();
            let months = s
                .notice_months(&q.office)
                .map_err(|e| internal("read notice months", e))?;
            Ok(ListPage {
                rows,
                total: found.total,
                page: page_no.min(pages),
                pages,
                months: months
                    .iter()
                    .map(|m| Choice::month(&m.to_string()))
                    .collect(),
                kinds: notice_kind_choices(),
                statuses: Vec::new(),
            })
        })
        .await
    }

    async fn notice(&self, p: &Principal, id: &str) -> BackendResult<NoticeDetail> {
        let (p, id) = (p.clone(), id.to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let n = s
                .notice(&id)
                .map_err(|e| internal("read notice", e))?
                .filter(|n| c.may_see(&n.office_number))
                .ok_or(BackendError::NotFound)?;
            mark_read(s, &c, &n.notice_id);
            let body = s
                .notice_body(&n.sha256)
                .map_err(|e| internal("read notice body", e))?
                .unwrap_or_default();
            let (tables, text) = if n.media_type.starts_with("text/csv") {
                match crate::notice::parse(&body) {
                    Ok(parsed) => (notice_tables(&parsed), None),
                    Err(e) => (Vec::new(), Some(e.to_string())),
                }
            } else if n.media_type.starts_with("text/plain") {
                let (text, _, _) = encoding_rs::SHIFT_JIS.decode(&body);
                (Vec::new(), Some(text.into_owned()))
            } else {
                (Vec::new(), None)
            };
            Ok(NoticeDetail {
                row: notice_row(&n, false),
                sha256: n.sha256.clone(),
                tables,
                text,
            })
        })
        .await
    }

    async fn notice_download(
        &self,
        p: &Principal,
        id: &str,
        utf8: bool,
    ) -> BackendResult<Download> {
        let (p, id) = (p.clone(), id.to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let n = s
                .notice(&id)
                .map_err(|e| internal("read notice", e))?
                .filter(|n| c.may_see(&n.office_number))
                .ok_or(BackendError::NotFound)?;
            mark_read(s, &c, &n.notice_id);
            let body = s
                .notice_body(&n.sha256)
                .map_err(|e| internal("read notice body", e))?
                .ok_or(BackendError::NotFound)?;
            let is_text = n.media_type.starts_with("text/");
            let (bytes, content_type) = if utf8 && is_text {
                let text = crate::notice::to_utf8(&body).map_err(|e| BackendError::Invalid {
                    code: Some(code::NOTICES_TEXT_UNREADABLE),
                    message_ja: e.to_string(),
                    message_en: e.to_string(),
                })?;
                let ct = if n.media_type.starts_with("text/csv") {
                    "text/csv; charset=utf-8"
                } else {
                    "text/plain; charset=utf-8"
                };
                (text.into_bytes(), ct.to_owned())
            } else {
                (body, n.media_type.clone())
            };
            Self::audit(
                s,
                &c,
                "notice_downloaded",
                &n.notice_id,
                format!(
                    "{} {} {}{}",
                    n.office_number,
                    n.kind_id,
                    n.processing_month,
                    if utf8 { " (UTF-8)" } else { "" }
                ),
            );
            Ok(Download {
                file_name: download_name(&n, utf8 && is_text),
                content_type,
                bytes,
            })
        })
        .await
    }

    async fn returns(&self, p: &Principal, q: &ListQuery) -> BackendResult<ListPage<ReturnRow>> {
        let (p, q) = (p.clone(), q.clone());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            if !c.may_see(&q.office) {
                return Err(BackendError::NotFound);
            }
            let month = month_filter(&q)?;
            let status = q
                .status
                .as_deref()
                .map(crate::returns::ReturnStatus::from_name);
            let mut items = s
                .returns_of(&q.office, month)
                .map_err(|e| internal("read returns", e))?;
            items.retain(|i| {
                status.is_none_or(|st| Some(i.status) == st)
                    && q.kind.as_deref().is_none_or(|k| i.row.form == k)
            });
            // Newest month first; within a month, in the notice's row order.
            items.sort_by(|a, b| {
                b.processing_month
                    .cmp(&a.processing_month)
                    .then_with(|| a.id.cmp(&b.id))
            });
            let rows = items.iter().map(return_row).collect();
            let mut page = ListPage::cut(rows, q.page);
            let mut months: Vec<String> = s
                .office_returns(&q.office, None)
                .map_err(|e| internal("read returns", e))?
                .into_iter()
                .map(|r| r.processing_month.to_string())
                .collect();
            months.dedup();
            months.reverse();
            page.months = months.iter().map(|m| Choice::month(m)).collect();
            page.kinds = ["請", "給", "サ"]
                .into_iter()
                .map(|f| Choice {
                    value: f.to_owned(),
                    label_ja: form_ja(f).to_owned(),
                    label_en: form_en(f).to_owned(),
                })
                .collect();
            page.statuses = crate::returns::ReturnStatus::ALL
                .iter()
                .map(|st| Choice {
                    value: st.as_str().to_owned(),
                    label_ja: st.label_ja().to_owned(),
                    label_en: st.label_en().to_owned(),
                })
                .collect();
            Ok(page)
        })
        .await
    }

    async fn close_return(&self, p: &Principal, id: &str, note: &str) -> BackendResult<()> {
        let (p, id, note) = (p.clone(), id.to_owned(), note.trim().to_owned());
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let item = s
                .return_item(&id)
                .map_err(|e| internal("read return", e))?
                .filter(|i| c.may_see(&i.office_number))
                .ok_or(BackendError::NotFound)?;
            if note.is_empty() {
                return Err(BackendError::Invalid {
                    code: Some(code::RETURNS_NOTE_MISSING),
                    message_ja: "完了にする理由（メモ）を書いてください。".into(),
                    message_en: "Write a note saying why it is closed.".into(),
                });
            }
            // The note was checked above and the item read: what is left is the store.
            crate::returns::close(s, &item.id, &note, Timestamp::now()).map_err(|e| match e {
                crate::returns::CloseError::NotFound(_) => BackendError::NotFound,
                other => internal("close return", other),
            })?;
            Self::audit(s, &c, "return_closed", &item.id, note.clone());
            Ok(())
        })
        .await
    }

    async fn system(&self, p: &Principal) -> BackendResult<SystemView> {
        let p = p.clone();
        let surroundings = self.surroundings.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            if c.account.role != Role::SystemAdmin {
                return Err(BackendError::Forbidden);
            }
            let machine = surroundings.machine();
            let started = Timestamp::now()
                .checked_sub(jiff::SignedDuration::try_from(machine.uptime).unwrap_or_default())
                .unwrap_or_else(|_| Timestamp::now());
            let store_path = s.path().map(|p| p.to_owned());
            let store_size = store_path
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| super::dashboard::bytes_text(m.len()))
                .unwrap_or_else(|| "不明 (unknown)".to_owned());
            let audit = s
                .audit_log(20)
                .map_err(|e| internal("read audit log", e))?
                .into_iter()
                .map(audit_row)
                .collect();
            Ok(SystemView {
                health: super::dashboard::health_view(&machine),
                started_at: jst_minutes(started),
                store_path: store_path
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                store_size,
                schema_version: crate::store::SCHEMA_VERSION,
                notices: s.notice_count().map_err(|e| internal("count notices", e))?,
                drop_dir: surroundings.drop_dir.display().to_string(),
                state_dir: surroundings.state_dir.display().to_string(),
                log: crate::recent_log::lines()
                    .into_iter()
                    .map(|l| LogLine {
                        at: crate::timefmt::jst_seconds(l.at),
                        level: l.level.to_string(),
                        target: l.target,
                        text: l.text,
                        help: l.code.as_deref().map(admin_ui::help::href),
                    })
                    .collect(),
                audit,
            })
        })
        .await
    }

    async fn audit_log(&self, p: &Principal, limit: usize) -> BackendResult<Vec<AuditRow>> {
        let p = p.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            if c.account.role != Role::SystemAdmin {
                return Err(BackendError::Forbidden);
            }
            Ok(s.audit_log(limit)
                .map_err(|e| internal("read audit log", e))?
                .into_iter()
                .map(audit_row)
                .collect())
        })
        .await
    }

    async fn backups(&self, p: &Principal) -> BackendResult<admin_ui::BackupsView> {
        self.admin_caller(p).await?;
        let backups = self.backups_or_none()?.0.clone();
        let _slot = self
            .store_slots
            .acquire()
            .await
            .map_err(|e| internal("slots", e))?;
        tokio::task::spawn_blocking(move || super::backups_page::view(&backups, Timestamp::now()))
            .await
            .map_err(|e| internal("backups page task", e))?
            .map_err(|e| internal("read the backup log", e))
    }

    async fn backup_now(&self, p: &Principal) -> BackendResult<admin_ui::ActionOutcome> {
        let c = self.admin_caller(p).await?;
        let (backups, run_now, _) = self.backups_or_none()?;
        if backups.sites().is_empty() {
            return Ok(admin_ui::ActionOutcome {
                code: Some(code::BACKUP_NO_SITES),
                done: false,
                message_ja: "バックアップの保存先が設定されていません。".into(),
                message_en: "No backup site is configured.".into(),
            });
        }
        run_now.notify_one();
        Self::audit(&self.store, &c, "backup_requested", "backup", String::new());
        Ok(admin_ui::ActionOutcome {
            code: None,
            done: true,
            message_ja: String::new(),
            message_en: String::new(),
        })
    }

    async fn backup_key_download(&self, p: &Principal) -> BackendResult<admin_ui::Download> {
        let c = self.admin_caller(p).await?;
        let backups = &self.backups_or_none()?.0;
        let key = backups.key().ok_or(BackendError::NotFound)?;
        Self::audit(
            &self.store,
            &c,
            "backup_key_exported",
            &key.id(),
            String::new(),
        );
        Ok(admin_ui::Download {
            file_name: format!("kaigo-relay-backup-key-{}.txt", key.id()),
            content_type: "text/plain; charset=utf-8".into(),
            bytes: key.file_text().into_bytes(),
        })
    }

    async fn confirm_backup_key(
        &self,
        p: &Principal,
        key_id: &str,
    ) -> BackendResult<admin_ui::ActionOutcome> {
        let c = self.admin_caller(p).await?;
        let backups = &self.backups_or_none()?.0;
        let key = backups.key().ok_or(BackendError::NotFound)?;
        if key_id != key.id() {
            return Ok(admin_ui::ActionOutcome {
                code: Some(code::BACKUP_KEY_ID_MISMATCH),
                done: false,
                message_ja:
                    "鍵IDが違います。書き出したファイルの key-id の行を、そのまま入力してください。"
                        .into(),
                message_en: "The key ID does not match; type the key-id line of the exported file."
                    .into(),
            });
        }
        crate::backup::confirm_key(backups.settings(), &key.id())
            .map_err(|e| internal("record the key confirmation", e))?;
        Self::audit(
            &self.store,
            &c,
            "backup_key_confirmed",
            &key.id(),
            String::new(),
        );
        if let Err(e) = backups.check_alerts(Timestamp::now()) {
            warn!(error = %e, "バックアップの通知を確認できませんでした (backup alerts could not be checked)");
        }
        Ok(admin_ui::ActionOutcome {
            code: None,
            done: true,
            message_ja: "鍵を保管したことを記録しました。".into(),
            message_en: "Recorded that the key is kept safe.".into(),
        })
    }

    async fn alert_prefs(&self, p: &Principal) -> BackendResult<admin_ui::AlertPrefsView> {
        let p = p.clone();
        let desk = self.alerts.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            Ok(super::alerts_page::prefs_view(
                &c.account,
                desk.as_deref().map(|d| &d.settings),
            ))
        })
        .await
    }

    async fn set_alert_prefs(
        &self,
        p: &Principal,
        prefs: admin_ui::AlertPrefsForm,
    ) -> BackendResult<()> {
        let p = p.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            let mut account = c.account.clone();
            super::alerts_page::apply_prefs(&mut account, prefs)?;
            let groups: Vec<&str> = account
                .alerts
                .groups
                .iter()
                .flatten()
                .map(|g| g.as_str())
                .collect();
            let detail = format!(
                "メール {} / 種類 {} / まとめ {} / mail {}, groups {}, digest {}",
                account.alerts.email.as_deref().unwrap_or("なし"),
                groups.join(","),
                if account.alerts.digest {
                    "あり"
                } else {
                    "なし"
                },
                account.alerts.email.as_deref().unwrap_or("none"),
                groups.join(","),
                account.alerts.digest
            );
            s.put_account(
                account,
                crate::store::Put::Replace,
                Some(NewAudit {
                    actor: Some(c.account.id.clone()),
                    address: Some(c.session.address.clone()),
                    action: "alert_prefs_changed".into(),
                    target: Some(c.account.id.clone()),
                    detail,
                }),
            )
            .map_err(|e| internal("save alert preferences", e))
        })
        .await
    }

    async fn alerts(&self, p: &Principal) -> BackendResult<admin_ui::AlertsView> {
        let p = p.clone();
        let desk = self.alerts.clone();
        self.blocking(move |s| {
            let c = Self::caller(s, &p)?;
            super::alerts_page::alerts_view(
                s,
                &c.account,
                &c.corps,
                desk.as_deref().map(|d| &d.settings),
            )
            .map_err(|e| internal("read alerts", e))
        })
        .await
    }

    async fn send_test_alert(&self, p: &Principal) -> BackendResult<Vec<admin_ui::TestAlertRow>> {
        let c = self.admin_caller(p).await?;
        let Some(desk) = self.alerts.clone() else {
            return Ok(Vec::new());
        };
        let accounts = self
            .blocking(|s| s.accounts().map_err(|e| internal("read accounts", e)))
            .await?;
        let rows = super::alerts_page::send_test(&desk, &c.account, &accounts).await;
        let summary: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {}", r.destination, if r.ok { "OK" } else { "NG" }))
            .collect();
        Self::audit(
            &self.store,
            &c,
            "alert_test_sent",
            "alerts",
            summary.join(", "),
        );
        Ok(rows)
    }

    async fn restore_backup(
        &self,
        p: &Principal,
        site: &str,
        seq: Option<u64>,
    ) -> BackendResult<admin_ui::ActionOutcome> {
        let c = self.admin_caller(p).await?;
        let (backups, _, restart) = self.backups_or_none()?;
        match backups.stage_restore(site, seq, &c.account.id).await {
            Ok(pending) => {
                Self::audit(
                    &self.store,
                    &c,
                    "backup_restore_staged",
                    &format!("{}#{}", pending.site, pending.seq),
                    String::new(),
                );
                // The daemon stops its stages, puts the copy in place and starts again.
                restart.cancel();
                Ok(admin_ui::ActionOutcome {
                    code: None,
                    done: true,
                    message_ja: format!(
                        "保存先「{}」のコピー #{}（{}）を取り出して確認しました。装置を再起動して、このコピーに置き換えます。1 分ほどしてから開き直してください。それまでのデータは残します。",
                        pending.site,
                        pending.seq,
                        jst_minutes(pending.created_at)
                    ),
                    message_en: format!(
                        "Copy #{} from site {} was downloaded and verified. The appliance restarts and puts it in place; reload in a minute. The data in place now is kept aside.",
                        pending.seq, pending.site
                    ),
                })
            }
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "管理画面からの復元を受け付けませんでした (restore from the admin UI refused)"
                );
                Ok(admin_ui::ActionOutcome {
                    code: Some(e.reading_code(code::BACKUP_RESTORE_FAILED)),
                    done: false,
                    message_ja: format!("戻せませんでした。今のデータはそのままです: {e}"),
                    message_en: format!("Not restored; the data in place is unchanged: {e}"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submission::{Receipt, State, Submission};

    fn sub(state: State, receipt: bool) -> Submission {
        let mut s = Submission::new("KK.CSV".into(), "00".into(), 10, Timestamp::now());
        s.state = state;
        s.receipt = receipt.then(|| Receipt {
            receipt_id: "R1".into(),
            arrived_at: "2026-12-03T09:00:00+09:00".into(),
            arrival_status: "arrived".into(),
            arrival_errors: vec![],
            stored_at: Timestamp::now(),
        });
        s
    }

    #[test]
    fn only_a_file_the_federation_does_not_have_is_sent_again() {
        let mut stuck = sub(State::FailedNeedsAttention, false);
        stuck.note = Some(crate::submission::Note {
            code: None,
            ja: "認証エラー".into(),
            en: "credentials".into(),
        });
        assert!(resendable(&stuck) && !withdrawable(&stuck));
        assert!(requeue(&mut stuck, "clerk", Timestamp::now()));
        assert_eq!(stuck.state, State::Queued);
        assert!(stuck.note.is_none());
        assert!(
            stuck
                .history
                .last()
                .unwrap()
                .reason
                .contains("clerk が再送を指示")
        );
        assert!(!requeue(&mut stuck, "clerk", Timestamp::now()), "once");

        // The federation has it: withdraw, never send again.
        let received = sub(State::FailedNeedsAttention, true);
        assert!(!resendable(&received) && withdrawable(&received));
        for state in State::ALL {
            let s = sub(state, false);
            assert_eq!(
                resendable(&s),
                state == State::FailedNeedsAttention,
                "{state:?}"
            );
            assert!(!withdrawable(&s), "{state:?} without a receipt");
        }
        assert!(withdrawable(&sub(State::Accepted, true)));
        assert!(!withdrawable(&sub(State::Withdrawn, true)));
        assert!(!withdrawable(&sub(State::Rejected, true)));
    }
}
