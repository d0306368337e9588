//! The contract between the admin UI and the appliance: the [`Backend`] trait the daemon
//! implements, and the plain view types the pages render. The UI knows nothing of the store;
//! it asks the backend, which decides.
//!
//! Invariant (architecture invariant 7, "every page checks who is asking"): every call that
//! reads or changes something takes the [`Principal`] the session belongs to, and the backend
//! decides from the principal's account alone whether it may; the UI never trusts an office
//! number or an ID from a URL or a form to mean "allowed". A resource the principal may not
//! see answers [`BackendError::NotFound`], exactly like one that does not exist, so IDs cannot
//! be probed.

use std::future::Future;
use std::net::IpAddr;

use serde::Serialize;

/// Who is on the other end of a request (from the connection, not from headers).
#[derive(Debug, Clone)]
pub struct Client {
    /// The peer's address.
    pub address: IpAddr,
    /// The `User-Agent` header, for the session list.
    pub user_agent: String,
}

/// An account's role (architecture.md, "Users and roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// システム管理者.
    SystemAdmin,
    /// 法人ID.
    Corporation,
    /// 事業所ID.
    Office,
    /// 職員ID.
    Staff,
}

impl Role {
    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            Role::SystemAdmin => "システム管理者",
            Role::Corporation => "法人",
            Role::Office => "事業所",
            Role::Staff => "職員",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self {
            Role::SystemAdmin => "System administrator",
            Role::Corporation => "Corporation",
            Role::Office => "Office",
            Role::Staff => "Staff",
        }
    }
}

/// An office as a link or a menu entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfficeRef {
    /// 事業所番号 (10 digits).
    pub number: String,
    /// 事業所名.
    pub name: String,
}

/// The logged-in user of a request, as the backend resolved it from the session cookie.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// Login ID.
    pub account_id: String,
    /// Name shown in the header.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Until the password is changed, every page but the change form (and logout) redirects
    /// to it.
    pub must_change_password: bool,
    /// The synchronizer token every form of this session must carry.
    pub csrf_token: String,
    /// An identifier of this session that is safe to show and to post back (not the token).
    pub session_id: String,
    /// Offices this principal may see, in menu order.
    pub offices: Vec<OfficeRef>,
    /// The office the user is working on (one of `offices`), if any.
    pub current_office: Option<OfficeRef>,
    /// May open the account-management pages (administrator, corporation, office).
    pub may_manage_accounts: bool,
    /// The system administrator (offices, audit log, every account).
    pub is_admin: bool,
}

/// The answer to a login attempt.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// Logged in: `token` goes into the session cookie and nowhere else.
    LoggedIn {
        /// The session token (opaque, random).
        token: String,
        /// The password must be changed before anything else.
        must_change_password: bool,
    },
    /// Refused; the page shows this (the same for a wrong ID, a wrong password and a locked
    /// account, apart from throttling).
    Refused {
        /// Japanese.
        message_ja: String,
        /// English.
        message_en: String,
        /// The catalogue entry that explains it.
        code: Option<crate::help::Code>,
    },
    /// Refused because of throttling (too many attempts from this address or for this ID):
    /// the page answers 429 instead of 401, with this message.
    Throttled {
        /// Japanese.
        message_ja: String,
        /// English.
        message_en: String,
        /// The catalogue entry that explains it.
        code: Option<crate::help::Code>,
    },
}

/// What went wrong, as the UI shows it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// No such thing, or not one this principal may see (404).
    #[error("not found")]
    NotFound,
    /// The principal may not do this at all (403): a role without the right, not a resource.
    #[error("forbidden")]
    Forbidden,
    /// The input is wrong; the form is shown again with this message (400 / 422).
    #[error("{message_en}")]
    Invalid {
        /// Japanese.
        message_ja: String,
        /// English.
        message_en: String,
        /// The catalogue entry that explains it, if one does (the page links to it).
        code: Option<crate::help::Code>,
    },
    /// Something broke inside; the page says so without details (500). The backend has logged
    /// the whole chain.
    #[error("internal error")]
    Internal,
}

/// One session in "my sessions".
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    /// Its safe identifier (what the revoke form posts).
    pub id: String,
    /// Login time (JST, for display).
    pub created_at: String,
    /// Last request (JST).
    pub last_seen_at: String,
    /// Client address at login.
    pub address: String,
    /// Browser at login.
    pub user_agent: String,
    /// The session making this request.
    pub current: bool,
}

/// An account as the management pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    /// Login ID.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Japanese label of the role.
    pub role_ja: String,
    /// The corporation, if any.
    pub corporation: Option<String>,
    /// For office accounts: the office.
    pub office: Option<OfficeRef>,
    /// For staff: the offices granted.
    pub grants: Vec<OfficeRef>,
    /// Locked after failures (until this time, JST), if it is.
    pub locked_until: Option<String>,
    /// Disabled.
    pub disabled: bool,
    /// Must change the password at the next login.
    pub must_change_password: bool,
    /// When the password was last set (JST).
    pub password_changed_at: String,
    /// Whether the asking principal may reset, unlock, grant, disable this account.
    pub manageable: bool,
}

/// What the "new account" form posts.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    /// Login ID.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Role (a corporation account may create office and staff accounts; an office account
    /// staff accounts; the administrator any).
    pub role: Option<Role>,
    /// For office accounts: the office number.
    pub office: Option<String>,
    /// For staff: office numbers granted.
    pub grants: Vec<String>,
    /// For corporation accounts (administrator only): the corporation's ID and name, and its
    /// offices.
    pub corporation_name: Option<String>,
    /// Offices of a new corporation.
    pub corporation_offices: Vec<String>,
}

/// A password set by someone else, shown once to the person who set it.
#[derive(Debug, Clone, Serialize)]
pub struct OneTimePassword {
    /// The account.
    pub account_id: String,
    /// The password (to be changed at first login).
    pub password: String,
}

/// An office as its pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct OfficeView {
    /// 事業所番号.
    pub number: String,
    /// 事業所名.
    pub name: String,
    /// Federation user ID (KJ…); never its password.
    pub federation_user_id: String,
    /// The corporation it belongs to, if any.
    pub corporation: Option<String>,
    /// "active" or "ended".
    pub status: String,
    /// First processing month it no longer sends (YYYYMM), if ended.
    pub ended_from_month: Option<String>,
    /// The office number that replaced it, if any.
    pub successor: Option<String>,
    /// Client certificate: subject and expiry (JST date), if known.
    pub certificate_subject: Option<String>,
    /// Expiry date of the client certificate.
    pub certificate_expires: Option<String>,
    /// Days until expiry (negative: expired).
    pub certificate_days_left: Option<i64>,
}

/// Rows a list page shows at once.
pub const PAGE_SIZE: usize = 100;

/// What a list page (submissions, notices, returns) was asked for: one office and its filters,
/// parsed and checked from the query string by the UI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// 事業所番号 (the backend decides whether the caller may see it).
    pub office: String,
    /// One processing month (YYYYMM), or every month.
    pub month: Option<String>,
    /// Notices: a kind ID (`7411`…, or `other` for PDF and text); returns: a form (`請`, `給`,
    /// `サ`).
    pub kind: Option<String>,
    /// Submissions: a state; returns: a status (snake_case).
    pub status: Option<String>,
    /// Notices: only those this account has not opened.
    pub unread_only: bool,
    /// 1-based page of [`PAGE_SIZE`] rows; `None`: every row (an export).
    pub page: Option<usize>,
}

/// A choice in a list's filter.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Choice {
    /// What the form sends.
    pub value: String,
    /// Japanese label.
    pub label_ja: String,
    /// English label.
    pub label_en: String,
}

impl Choice {
    /// A month choice from `YYYYMM` ("2026年11月", "2026-11").
    pub fn month(yyyymm: &str) -> Choice {
        let y = yyyymm.get(..4).unwrap_or(yyyymm);
        let mm = yyyymm.get(4..).unwrap_or("");
        Choice {
            value: yyyymm.to_owned(),
            label_ja: format!("{y}年{}月", mm.trim_start_matches('0')),
            label_en: format!("{y}-{mm}"),
        }
    }
}

/// One page of a filtered list, with what its filters may choose from.
#[derive(Debug, Clone, Serialize)]
pub struct ListPage<T> {
    /// The rows of this page.
    pub rows: Vec<T>,
    /// Rows matching the filters, over every page.
    pub total: usize,
    /// This page (1-based).
    pub page: usize,
    /// Pages in all (at least 1).
    pub pages: usize,
    /// The months the office has rows for, newest first (value YYYYMM, label 2026年11月).
    pub months: Vec<Choice>,
    /// The kinds (notices) or forms (returns) to filter by.
    pub kinds: Vec<Choice>,
    /// The states (submissions) or statuses (returns) to filter by.
    pub statuses: Vec<Choice>,
}

impl<T> ListPage<T> {
    /// Cuts page `page` (1-based; `None`: everything) out of every matching row.
    pub fn cut(all: Vec<T>, page: Option<usize>) -> ListPage<T> {
        let total = all.len();
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        let (rows, page) = match page {
            None => (all, 1),
            Some(n) => {
                let n = n.clamp(1, pages);
                let rows = all
                    .into_iter()
                    .skip((n - 1) * PAGE_SIZE)
                    .take(PAGE_SIZE)
                    .collect();
                (rows, n)
            }
        };
        ListPage {
            rows,
            total,
            page,
            pages,
            months: Vec::new(),
            kinds: Vec::new(),
            statuses: Vec::new(),
        }
    }
}

/// How an action the clerk asked for (resend, withdraw) ended.
#[derive(Debug, Clone, Serialize)]
pub struct ActionOutcome {
    /// Whether it was done.
    pub done: bool,
    /// What happened, in Japanese.
    pub message_ja: String,
    /// The same in English.
    pub message_en: String,
    /// The catalogue entry that explains it, if one does.
    pub code: Option<crate::help::Code>,
}

/// One submission in a list.
#[derive(Debug, Clone, Serialize)]
pub struct SubmissionRow {
    /// Its ID (also the idempotency key).
    pub id: String,
    /// File name as dropped.
    pub file_name: String,
    /// 事業所番号.
    pub office_number: Option<String>,
    /// 処理対象年月 (YYYYMM).
    pub processing_month: Option<String>,
    /// State (snake_case) and its Japanese label.
    pub state: String,
    /// Japanese label of the state.
    pub state_ja: String,
    /// 受付番号.
    pub receipt_id: Option<String>,
    /// ○ △ ×.
    pub reception_mark: Option<String>,
    /// When it was taken (JST).
    pub taken_at: String,
    /// English label of the state.
    pub state_en: String,
    /// A person may ask for it to be sent again (it stopped needing one: credentials, the
    /// certificate, a gateway refusal now fixed).
    pub resendable: bool,
    /// It may be withdrawn (取消) at the federation: it has a receipt and is not withdrawn.
    pub withdrawable: bool,
}

/// One step of a submission's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// When (JST).
    pub at: String,
    /// State after it.
    pub state_ja: String,
    /// What happened.
    pub detail: String,
}

/// One finding of the checker or the federation.
#[derive(Debug, Clone, Serialize)]
pub struct FindingView {
    /// "error" or "warning".
    pub severity: String,
    /// Stable code.
    pub code: String,
    /// Line (record) number.
    pub record_no: Option<u32>,
    /// Item (column) number.
    pub item_no: Option<u32>,
    /// Japanese.
    pub message_ja: String,
    /// English.
    pub message_en: String,
}

/// One submission in full.
#[derive(Debug, Clone, Serialize)]
pub struct SubmissionDetail {
    /// The list row.
    pub row: SubmissionRow,
    /// SHA-256 (hex).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The 8.3 name it is sent under, if replaced.
    pub send_name: Option<String>,
    /// Explanation for the clerk (Japanese).
    pub note_ja: Option<String>,
    /// Explanation (English).
    pub note_en: Option<String>,
    /// The catalogue code of the explanation, if it has one.
    pub note_code: Option<String>,
    /// Every state change.
    pub timeline: Vec<TimelineEntry>,
    /// The checker's findings.
    pub findings: Vec<FindingView>,
    /// The federation's 受付 errors.
    pub reception_errors: Vec<FindingView>,
}

/// One notice in a list.
#[derive(Debug, Clone, Serialize)]
pub struct NoticeRow {
    /// Notice ID.
    pub id: String,
    /// 事業所番号.
    pub office_number: String,
    /// Kind (e.g. 7411).
    pub kind_id: String,
    /// Title.
    pub title: String,
    /// 審査月 / processing month (YYYYMM).
    pub processing_month: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// When mirrored (JST).
    pub received_at: String,
    /// The kind's Japanese name, when the appliance knows the kind.
    pub kind_ja: String,
    /// This account has not opened or downloaded it yet.
    pub unread: bool,
    /// It can be shown in the browser (PDF, text).
    pub inline: bool,
}

/// A notice opened: its rows when it is a CSV notice of a known kind, else its text.
#[derive(Debug, Clone, Serialize)]
pub struct NoticeDetail {
    /// The list row.
    pub row: NoticeRow,
    /// SHA-256 (hex).
    pub sha256: String,
    /// Sections of rows (header, details, totals), each with Japanese column names.
    pub tables: Vec<NoticeTable>,
    /// For text notices: the text (decoded from CP932).
    pub text: Option<String>,
}

/// One section of a parsed notice.
#[derive(Debug, Clone, Serialize)]
pub struct NoticeTable {
    /// Section title (e.g. 明細).
    pub title: String,
    /// Column names (Japanese).
    pub columns: Vec<String>,
    /// Rows of cell text.
    pub rows: Vec<Vec<String>>,
}

/// A download.
#[derive(Debug, Clone)]
pub struct Download {
    /// File name offered to the browser.
    pub file_name: String,
    /// Content type.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// One 返戻 item.
#[derive(Debug, Clone, Serialize)]
pub struct ReturnRow {
    /// Its ID (what the close form posts).
    pub id: String,
    /// 事業所番号.
    pub office_number: String,
    /// 被保険者番号.
    pub insured_number: String,
    /// 被保険者氏名.
    pub insured_name: String,
    /// 審査月 of the 返戻一覧 (YYYYMM).
    pub processing_month: String,
    /// 種別 as the notice writes it: `請`, `給`, `サ`.
    pub form: String,
    /// 種別 in words: 請求明細書, 給付管理票, 計画費明細書.
    pub form_ja: String,
    /// The same in English.
    pub form_en: String,
    /// 保険者番号.
    pub insurer_number: String,
    /// The 7411 notice it came from.
    pub notice_id: String,
    /// サービス提供年月 (YYYYMM).
    pub service_month: String,
    /// 事由コード.
    pub reason_code: String,
    /// 内容.
    pub content: String,
    /// Status (snake_case).
    pub status: String,
    /// Japanese label of the status.
    pub status_ja: String,
    /// English label of the status.
    pub status_en: String,
    /// The submission it was resubmitted in, if linked.
    pub linked_submission: Option<String>,
    /// The note it was closed with.
    pub note: Option<String>,
}

/// One line of the daemon's recent log.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// When (JST, to the second).
    pub at: String,
    /// `ERROR`, `WARN`, `INFO`.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message and its fields.
    pub text: String,
    /// The help page of the catalogue entry the line names.
    pub help: Option<String>,
}

/// The system page: what runs, where its data is, how the machine is, what it logged.
#[derive(Debug, Clone, Serialize)]
pub struct SystemView {
    /// Disks, memory, uptime, version.
    pub health: HealthView,
    /// When the daemon started (JST).
    pub started_at: String,
    /// The store file and its size.
    pub store_path: String,
    /// Its size, e.g. "120 MB".
    pub store_size: String,
    /// The store's schema version.
    pub schema_version: u64,
    /// Notices stored.
    pub notices: u64,
    /// The drop folder.
    pub drop_dir: String,
    /// The state folder.
    pub state_dir: String,
    /// The recent log, newest first.
    pub log: Vec<LogLine>,
    /// The newest audit entries.
    pub audit: Vec<AuditRow>,
}

/// The backups page: every site, the recent runs and drills, the encryption key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupsView {
    /// Each configured site.
    pub sites: Vec<BackupSiteView>,
    /// The newest runs, newest first.
    pub runs: Vec<BackupRunRow>,
    /// The encryption key of off-site copies, when one is in use.
    pub key: Option<BackupKeyView>,
    /// Hours between scheduled backups.
    pub interval_hours: String,
}

/// One backup site.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupSiteView {
    /// Its name.
    pub name: String,
    /// Where it is (folder, or bucket and endpoint).
    pub location: String,
    /// Whether its copies are encrypted.
    pub encrypted: bool,
    /// The last attempt to write a copy (JST), and whether it worked.
    pub last_attempt: Option<String>,
    /// Whether that attempt worked.
    pub last_attempt_ok: bool,
    /// The newest copy written and read back (JST, with its number).
    pub last_verified: Option<String>,
    /// Its size.
    pub size: Option<String>,
    /// The last restore drill (JST).
    pub last_drill: Option<String>,
    /// Whether it passed.
    pub last_drill_ok: bool,
    /// The newest error of a copy or a drill, for people.
    pub error: Option<String>,
    /// Where the help explains that error.
    pub error_help: Option<String>,
    /// Whether the site needs attention (no recent verified copy, or a failed drill).
    pub stale: bool,
}

/// One backup run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupRunRow {
    /// Its number.
    pub seq: u64,
    /// When (JST).
    pub at: String,
    /// Why it ran, for people.
    pub reason: String,
    /// Snapshot size.
    pub size: String,
    /// Seconds it took.
    pub seconds: String,
    /// Sites written, of all.
    pub sites_ok: usize,
    /// Sites in all.
    pub sites_total: usize,
    /// What failed.
    pub errors: Vec<ExplainedText>,
}

/// A message for people with the address of its explanation, when it has one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExplainedText {
    /// The message.
    pub text: String,
    /// Its help page (`/help/code/…`).
    pub help: Option<String>,
}

/// The backup encryption key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupKeyView {
    /// Its ID.
    pub id: String,
    /// Whether the administrator confirmed having exported it.
    pub confirmed: bool,
}

/// One group of alerts a person may choose on the account page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertGroupChoice {
    /// The form value (`returns`, …).
    pub value: String,
    /// Japanese label.
    pub ja: String,
    /// English label.
    pub en: String,
    /// Chosen (or, with no choice made, the role's default).
    pub checked: bool,
}

/// The principal's alert preferences (the account page).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertPrefsView {
    /// Where alerts go (empty: none by mail).
    pub email: String,
    /// The groups this role may choose, and which are chosen.
    pub groups: Vec<AlertGroupChoice>,
    /// One mail a day instead of one each.
    pub digest: bool,
    /// `ja`, `en` or `both`.
    pub language: String,
    /// Whether the appliance has a mail server configured.
    pub mail_configured: bool,
    /// When the digest goes out (`08:00`).
    pub digest_at: String,
}

/// The alert preferences posted from the account page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertPrefsForm {
    /// E-mail address (empty: no mail).
    pub email: String,
    /// Chosen group values.
    pub groups: Vec<String>,
    /// Daily digest.
    pub digest: bool,
    /// `ja`, `en` or `both`.
    pub language: String,
}

/// One current alert on the alerts page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertRow {
    /// Its kind's title, Japanese.
    pub title_ja: String,
    /// English.
    pub title_en: String,
    /// `error`, `warning` or `info`.
    pub severity: String,
    /// The offices concerned, as names (the viewer's only).
    pub offices: String,
    /// What happened and what to do, Japanese.
    pub message_ja: String,
    /// English.
    pub message_en: String,
    /// First seen (JST).
    pub raised_at: String,
    /// The page to act on it.
    pub link: String,
}

/// One delivery on the alerts page (administrator only).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryRow {
    /// When it happened (JST).
    pub at: String,
    /// What (the kind's title, with 解決 for a resolution).
    pub what_ja: String,
    /// English.
    pub what_en: String,
    /// `mail:…` or `webhook:…`.
    pub destination: String,
    /// `pending`, `sent` or `gave_up`.
    pub state: String,
    /// Japanese label of the state (with tries).
    pub state_ja: String,
    /// English.
    pub state_en: String,
    /// The last failure.
    pub error: String,
    /// Where the help explains it.
    pub error_help: Option<String>,
}

/// The alerts page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertsView {
    /// The current conditions the viewer may see (events are on their own pages).
    pub current: Vec<AlertRow>,
    /// The newest deliveries (administrator only; empty otherwise).
    pub deliveries: Vec<DeliveryRow>,
    /// Whether a mail server is configured.
    pub mail_configured: bool,
    /// Configured webhooks' names (administrator only).
    pub webhooks: Vec<String>,
    /// Configured recipients (`name <address>`, administrator only).
    pub recipients: Vec<String>,
}

/// The outcome of a test alert at one destination.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TestAlertRow {
    /// `mail:…` or `webhook:…`.
    pub destination: String,
    /// Accepted.
    pub ok: bool,
    /// Why not.
    pub error: String,
    /// Where the help explains why.
    pub error_help: Option<String>,
}

/// One audit log entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    /// Sequence number.
    pub seq: u64,
    /// When (JST).
    pub at: String,
    /// Who.
    pub actor: Option<String>,
    /// From where.
    pub address: Option<String>,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// Details.
    pub detail: String,
}

/// The home page: everything a clerk checks first, for the offices the principal may see.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dashboard {
    /// This month's reception window, as the gateway last reported it (none before the first
    /// answer).
    pub window: Option<WindowView>,
    /// Per office: this processing month's files and their results.
    pub offices: Vec<OfficeSummary>,
    /// Conditions that need a person, most serious first.
    pub alerts: Vec<AlertView>,
    /// The appliance (shown to everyone: a clerk should see when the disk is filling).
    pub health: HealthView,
    /// Files sent and claims returned per month, oldest first (for the chart).
    pub months: Vec<MonthBar>,
}

/// The reception window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowView {
    /// 処理対象年月 (YYYYMM) of the current (or next) window.
    pub processing_month: String,
    /// Claims are received now.
    pub open: bool,
    /// When it opens (JST).
    pub opens_at: String,
    /// When it closes (JST, the first closed minute).
    pub closes_at: String,
    /// Whole days left until it closes (open) or opens (closed).
    pub days_left: i64,
    /// Hours left beyond the whole days.
    pub hours_left: i64,
    /// Files held until the window opens.
    pub held: usize,
}

/// One office on the home page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OfficeSummary {
    /// 事業所番号.
    pub number: String,
    /// 事業所名.
    pub name: String,
    /// Files of this processing month taken from the folder.
    pub files: usize,
    /// Of them: at the federation (到達) and waiting for the 受付 result.
    pub arrived: usize,
    /// 受付済 ○.
    pub accepted: usize,
    /// 受付済 with returns △.
    pub accepted_with_returns: usize,
    /// Not accepted ×.
    pub rejected: usize,
    /// Checked and waiting to be sent, or being sent.
    pub in_progress: usize,
    /// Held until the window opens.
    pub held: usize,
    /// Refused by the checker (not sent).
    pub refused: usize,
    /// Needing a person.
    pub needs_attention: usize,
    /// Open 返戻 items (any month).
    pub open_returns: usize,
    /// Notices of the recent months this account has not opened.
    pub new_notices: usize,
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// `error` (someone must act now) or `warning`.
    pub severity: String,
    /// Japanese.
    pub message_ja: String,
    /// English.
    pub message_en: String,
    /// A page that helps, if any.
    pub link: Option<String>,
    /// Where the help explains it.
    pub help: String,
}

/// The appliance's health.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealthView {
    /// Program version.
    pub version: String,
    /// Since when it runs, e.g. "3日 4時間".
    pub uptime: String,
    /// Free space on the drop folder's volume, e.g. "12.3 GB".
    pub drop_free: String,
    /// Percent free there.
    pub drop_free_percent: u8,
    /// Free space on the state volume (the store).
    pub state_free: String,
    /// Percent free there.
    pub state_free_percent: u8,
    /// Memory in use by the whole machine, e.g. "1.2 GB / 4.0 GB".
    pub memory: String,
    /// This daemon's own memory, e.g. "24 MB".
    pub process_memory: String,
}

/// One month of the chart.
#[derive(Debug, Clone, Serialize)]
pub struct MonthBar {
    /// 処理対象年月 (YYYYMM).
    pub month: String,
    /// Files sent (arrived at the federation) for that month.
    pub sent: usize,
    /// 返戻 items of that month's claims (by the notices of 審査月 = that month).
    pub returned: usize,
}

/// The answer of `GET /healthz`: whether the appliance can do its work.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    /// Every check passed.
    pub ok: bool,
    /// One entry per check: its name, whether it passed, and a short reason when not.
    pub checks: Vec<CheckResult>,
}

/// One check of [`HealthCheck`].
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// `store`, `disk`, …
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// Why not (no personal data, no secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One Prometheus metric family.
#[derive(Debug, Clone)]
pub struct MetricFamily {
    /// `kaigo_relay_…`.
    pub name: String,
    /// One line of help.
    pub help: String,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    /// Its samples: labels and the value.
    pub samples: Vec<(Vec<(String, String)>, f64)>,
}

/// The appliance's own CA certificate, for the browsers of the office to trust.
#[derive(Debug, Clone, Serialize)]
pub struct CaCertificate {
    /// PEM, as downloaded.
    #[serde(skip)]
    pub pem: Vec<u8>,
    /// SHA-256 fingerprint of the certificate (colon-separated hex), to compare with what the
    /// operating system shows.
    pub fingerprint_sha256: String,
    /// The names and addresses the server certificate is valid for.
    pub server_names: Vec<String>,
}

/// Result of a backend call.
pub type BackendResult<T> = Result<T, BackendError>;

/// What the admin UI needs from the appliance. Every method that takes a [`Principal`]
/// decides on its own whether that principal may; the UI calls it for every request.
pub trait Backend: Send + Sync + 'static {
    /// A login attempt from the login form (throttled, locked, audited by the backend).
    fn login(
        &self,
        id: &str,
        password: &str,
        client: &Client,
    ) -> impl Future<Output = BackendResult<LoginOutcome>> + Send;

    /// The principal of a session token from the cookie, if the session is valid.
    fn session(&self, token: &str)
    -> impl Future<Output = BackendResult<Option<Principal>>> + Send;

    /// Ends the session.
    fn logout(&self, p: &Principal) -> impl Future<Output = BackendResult<()>> + Send;

    /// The user changes their own password (with the old one); every other session of the
    /// account ends. `Invalid` when the old one is wrong or the new one breaks the policy.
    fn change_password(
        &self,
        p: &Principal,
        old: &str,
        new: &str,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// The password change offered on the login screen (ID, old password, new password),
    /// throttled like a login; every session of the account ends.
    fn change_password_at_login(
        &self,
        id: &str,
        old: &str,
        new: &str,
        client: &Client,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// Switches the session's current office (one the principal may see).
    fn switch_office(
        &self,
        p: &Principal,
        office: &str,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// The appliance's local CA certificate, when it made its own (none with an own
    /// certificate from `admin.cert_file`).
    fn ca_certificate(&self) -> impl Future<Output = Option<CaCertificate>> + Send;

    /// The appliance's own checks, for `GET /healthz` (no session: load balancers and
    /// monitoring ask it).
    fn health_check(&self) -> impl Future<Output = HealthCheck> + Send;

    /// Metrics for `GET /metrics`: from loopback, or with the configured bearer token;
    /// `Forbidden` otherwise.
    fn metrics(
        &self,
        client: &Client,
        bearer: Option<&str>,
    ) -> impl Future<Output = BackendResult<Vec<MetricFamily>>> + Send;

    /// The home page's figures for the offices the principal may see.
    fn dashboard(&self, p: &Principal) -> impl Future<Output = BackendResult<Dashboard>> + Send;

    /// The principal's own sessions.
    fn sessions(
        &self,
        p: &Principal,
    ) -> impl Future<Output = BackendResult<Vec<SessionView>>> + Send;

    /// Ends one of the principal's own sessions.
    fn revoke_session(
        &self,
        p: &Principal,
        session_id: &str,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// The accounts the principal may see on the management pages.
    fn accounts(
        &self,
        p: &Principal,
    ) -> impl Future<Output = BackendResult<Vec<AccountView>>> + Send;

    /// One account.
    fn account(
        &self,
        p: &Principal,
        id: &str,
    ) -> impl Future<Output = BackendResult<AccountView>> + Send;

    /// Creates an account; its first password is generated and shown once.
    fn create_account(
        &self,
        p: &Principal,
        new: NewAccount,
    ) -> impl Future<Output = BackendResult<OneTimePassword>> + Send;

    /// Sets a new generated password (to be changed at next login) and ends its sessions.
    fn reset_password(
        &self,
        p: &Principal,
        id: &str,
    ) -> impl Future<Output = BackendResult<OneTimePassword>> + Send;

    /// Lifts a lockout.
    fn unlock(&self, p: &Principal, id: &str) -> impl Future<Output = BackendResult<()>> + Send;

    /// Sets a staff account's granted offices.
    fn set_grants(
        &self,
        p: &Principal,
        id: &str,
        offices: Vec<String>,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// Disables or enables an account (a disabled one cannot log in; its sessions end).
    fn set_disabled(
        &self,
        p: &Principal,
        id: &str,
        disabled: bool,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// The offices the principal may see.
    fn offices(&self, p: &Principal)
    -> impl Future<Output = BackendResult<Vec<OfficeView>>> + Send;

    /// One office.
    fn office(
        &self,
        p: &Principal,
        number: &str,
    ) -> impl Future<Output = BackendResult<OfficeView>> + Send;

    /// The submissions of one office, newest first, filtered by month and state.
    fn submissions(
        &self,
        p: &Principal,
        q: &ListQuery,
    ) -> impl Future<Output = BackendResult<ListPage<SubmissionRow>>> + Send;

    /// Sends a submission that needed a person again (audited).
    fn resend(
        &self,
        p: &Principal,
        id: &str,
    ) -> impl Future<Output = BackendResult<ActionOutcome>> + Send;

    /// Withdraws (取消) a submission at the federation (audited).
    fn withdraw(
        &self,
        p: &Principal,
        id: &str,
    ) -> impl Future<Output = BackendResult<ActionOutcome>> + Send;

    /// One submission.
    fn submission(
        &self,
        p: &Principal,
        id: &str,
    ) -> impl Future<Output = BackendResult<SubmissionDetail>> + Send;

    /// The notices of one office, newest first, filtered by month, kind and unread.
    fn notices(
        &self,
        p: &Principal,
        q: &ListQuery,
    ) -> impl Future<Output = BackendResult<ListPage<NoticeRow>>> + Send;

    /// One notice, parsed (and marked read for the caller).
    fn notice(
        &self,
        p: &Principal,
        id: &str,
    ) -> impl Future<Output = BackendResult<NoticeDetail>> + Send;

    /// A notice's bytes: the original (CP932), or as UTF-8 with a BOM; audited, and marked
    /// read for the caller.
    fn notice_download(
        &self,
        p: &Principal,
        id: &str,
        utf8: bool,
    ) -> impl Future<Output = BackendResult<Download>> + Send;

    /// The 返戻 items of one office, newest month first, filtered by month, form and status.
    fn returns(
        &self,
        p: &Principal,
        q: &ListQuery,
    ) -> impl Future<Output = BackendResult<ListPage<ReturnRow>>> + Send;

    /// Closes a return item by hand with a note.
    fn close_return(
        &self,
        p: &Principal,
        id: &str,
        note: &str,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// The system page (administrator only).
    fn system(&self, p: &Principal) -> impl Future<Output = BackendResult<SystemView>> + Send;

    /// The audit log, newest first (administrator only).
    fn audit_log(
        &self,
        p: &Principal,
        limit: usize,
    ) -> impl Future<Output = BackendResult<Vec<AuditRow>>> + Send;

    /// The backups page (administrator only).
    fn backups(&self, p: &Principal) -> impl Future<Output = BackendResult<BackupsView>> + Send;

    /// Starts a backup now (administrator only); it runs in the background.
    fn backup_now(
        &self,
        p: &Principal,
    ) -> impl Future<Output = BackendResult<ActionOutcome>> + Send;

    /// The backup key as a file for the administrator to keep off the appliance; audited.
    fn backup_key_download(
        &self,
        p: &Principal,
    ) -> impl Future<Output = BackendResult<Download>> + Send;

    /// Restores the store from a site's copy (`seq`, or its newest): the copy is downloaded and
    /// verified first; then the daemon restarts and puts it in place, keeping the old file.
    fn restore_backup(
        &self,
        p: &Principal,
        site: &str,
        seq: Option<u64>,
    ) -> impl Future<Output = BackendResult<ActionOutcome>> + Send;

    /// Records that the administrator exported and kept the key (they type its ID back).
    fn confirm_backup_key(
        &self,
        p: &Principal,
        key_id: &str,
    ) -> impl Future<Output = BackendResult<ActionOutcome>> + Send;

    /// The principal's alert preferences.
    fn alert_prefs(
        &self,
        p: &Principal,
    ) -> impl Future<Output = BackendResult<AlertPrefsView>> + Send;

    /// Sets the principal's own alert preferences; audited.
    fn set_alert_prefs(
        &self,
        p: &Principal,
        prefs: AlertPrefsForm,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// The alerts page: the current alerts of the offices the principal may see, and for the
    /// administrator the recent deliveries and the configured destinations.
    fn alerts(&self, p: &Principal) -> impl Future<Output = BackendResult<AlertsView>> + Send;

    /// Sends a test alert now to every configured destination and the principal's own
    /// address (administrator only); one outcome per destination.
    fn send_test_alert(
        &self,
        p: &Principal,
    ) -> impl Future<Output = BackendResult<Vec<TestAlertRow>>> + Send;
}
