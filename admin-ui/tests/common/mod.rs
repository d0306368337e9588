//! An in-memory [`Backend`] for the admin UI's tests: fixed principals per session token,
//! sample data with characters that must be escaped, failures on request by ID, and a record
//! of every call (method, account, argument) so tests can see what the UI asked.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use admin_ui::*;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};

/// Backend methods that change something; a GET must never call one.
pub const MUTATING: &[&str] = &[
    "login",
    "logout",
    "change_password",
    "change_password_at_login",
    "switch_office",
    "revoke_session",
    "create_account",
    "reset_password",
    "unlock",
    "set_grants",
    "set_disabled",
    "close_return",
    "backup_now",
    "confirm_backup_key",
    "restore_backup",
    "set_alert_prefs",
    "send_test_alert",
    "resend",
    "withdraw",
];

pub const OFFICE_A: &str = "1310000001";
pub const OFFICE_B: &str = "1310000019";
/// An office the fake lets every principal see although it is in nobody's menu.
pub const OFFICE_EXTRA: &str = "1310000027";
/// An office the fake hides from everyone (another corporation's).
pub const OFFICE_FOREIGN: &str = "2720000002";

pub const ADMIN: &str = "tok-admin";
pub const CORP: &str = "tok-corp";
pub const STAFF: &str = "tok-staff";
pub const MUST: &str = "tok-must";
pub const NO_OFFICE: &str = "tok-nooffice";

/// The one-time password the fake hands out.
pub const OTP: &str = "Kari-Pass-7391";
/// A name that must come out escaped.
pub const NASTY: &str = "<script>alert(\"x\")</script>&'";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    /// The principal's account, if the call takes one.
    pub account: Option<String>,
    /// The ID, office or other argument (never a password).
    pub arg: String,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub calls: Mutex<Vec<Call>>,
}

fn office(number: &str, name: &str) -> OfficeRef {
    OfficeRef {
        number: number.into(),
        name: name.into(),
    }
}

pub fn principal(token: &str) -> Option<Principal> {
    let a = office(OFFICE_A, "さくら訪問介護");
    let b = office(OFFICE_B, "ひまわりデイサービス");
    let base = Principal {
        account_id: String::new(),
        display_name: String::new(),
        role: Role::Staff,
        must_change_password: false,
        csrf_token: format!("csrf-{token}"),
        session_id: format!("sid-{token}"),
        offices: vec![a.clone()],
        current_office: Some(a.clone()),
        may_manage_accounts: false,
        is_admin: false,
    };
    Some(match token {
        ADMIN => Principal {
            account_id: "admin".into(),
            display_name: "管理者".into(),
            role: Role::SystemAdmin,
            offices: vec![a.clone(), b.clone()],
            may_manage_accounts: true,
            is_admin: true,
            ..base
        },
        CORP => Principal {
            account_id: "corp".into(),
            display_name: "法人 担当".into(),
            role: Role::Corporation,
            offices: vec![a, b.clone()],
            current_office: Some(b),
            may_manage_accounts: true,
            ..base
        },
        STAFF => Principal {
            account_id: "staff".into(),
            display_name: NASTY.into(),
            ..base
        },
        MUST => Principal {
            account_id: "newbie".into(),
            display_name: "新人".into(),
            must_change_password: true,
            ..base
        },
        NO_OFFICE => Principal {
            account_id: "floater".into(),
            display_name: "未選択さん".into(),
            current_office: None,
            offices: vec![a, b],
            ..base
        },
        _ => return None,
    })
}

/// What the fake allows: every office but the foreign one.
fn visible(office: &str) -> BackendResult<()> {
    if office == OFFICE_FOREIGN || office.is_empty() {
        Err(BackendError::NotFound)
    } else {
        Ok(())
    }
}

/// Failures by ID: `missing` → NotFound, `forbidden` → Forbidden, `broken` → Internal,
/// `invalid` → Invalid.
fn by_id(id: &str) -> BackendResult<()> {
    match id {
        "missing" => Err(BackendError::NotFound),
        "forbidden" => Err(BackendError::Forbidden),
        "broken" => Err(BackendError::Internal),
        "invalid" => Err(invalid()),
        _ => Ok(()),
    }
}

pub fn invalid() -> BackendError {
    BackendError::Invalid {
        code: None,
        message_ja: "入力が正しくありません（テスト）".into(),
        message_en: "Invalid input (test)".into(),
    }
}

fn account_view(id: &str) -> AccountView {
    AccountView {
        id: id.into(),
        display_name: format!("職員 {id} {NASTY}"),
        role: Role::Staff,
        role_ja: Role::Staff.label_ja().into(),
        corporation: Some("社会福祉法人 さくら会".into()),
        office: None,
        grants: vec![office(OFFICE_A, "さくら訪問介護")],
        locked_until: Some("2026-12-01 10:30".into()),
        disabled: false,
        must_change_password: true,
        password_changed_at: "2026-11-30 09:00".into(),
        manageable: true,
    }
}

fn office_view(number: &str, days: Option<i64>) -> OfficeView {
    OfficeView {
        number: number.into(),
        name: format!("事業所 {number}"),
        federation_user_id: format!("KJ{number}"),
        corporation: Some("社会福祉法人 さくら会".into()),
        status: "active".into(),
        ended_from_month: None,
        successor: None,
        certificate_subject: Some(format!("CN=KJ{number}")),
        certificate_expires: days.map(|_| "2027-03-31".into()),
        certificate_days_left: days,
    }
}

fn submission_row(id: &str, office: &str) -> SubmissionRow {
    SubmissionRow {
        id: id.into(),
        file_name: format!("{NASTY}.CSV"),
        office_number: Some(office.into()),
        processing_month: Some("202611".into()),
        state: "accepted".into(),
        state_ja: "受付済み".into(),
        receipt_id: Some("R-0001".into()),
        reception_mark: Some("○".into()),
        taken_at: "2026-12-01 09:00".into(),
        state_en: "accepted".into(),
        resendable: false,
        withdrawable: true,
    }
}

fn finding() -> FindingView {
    FindingView {
        severity: "error".into(),
        code: "data.insured_number".into(),
        record_no: Some(3),
        item_no: None,
        message_ja: "被保険者番号の桁数が違います".into(),
        message_en: "Insured number has the wrong length".into(),
    }
}

fn notice_row(id: &str, office: &str) -> NoticeRow {
    NoticeRow {
        id: id.into(),
        office_number: office.into(),
        kind_id: "7411".into(),
        title: "返戻（保留）一覧表".into(),
        processing_month: "202611".into(),
        media_type: "text/csv".into(),
        size: 1234,
        received_at: "2026-12-05 08:00".into(),
        kind_ja: "返戻（保留）一覧表".into(),
        unread: true,
        inline: false,
    }
}

/// The query as the fake records it: `office|month|kind|status|unread|page`.
fn query_arg(q: &ListQuery) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        q.office,
        q.month.as_deref().unwrap_or(""),
        q.kind.as_deref().unwrap_or(""),
        q.status.as_deref().unwrap_or(""),
        q.unread_only,
        q.page.map(|p| p.to_string()).unwrap_or_default()
    )
}

/// A page of three (250 rows in all), as asked.
fn page_of<T>(rows: Vec<T>, q: &ListQuery) -> ListPage<T> {
    let mut page = ListPage::cut(rows, Some(1));
    page.total = 250;
    page.pages = 3;
    page.page = q.page.unwrap_or(1).clamp(1, 3);
    page.months = vec![Choice::month("202611"), Choice::month("202610")];
    page.kinds = vec![Choice {
        value: "7411".into(),
        label_ja: "返戻一覧".into(),
        label_en: "returns list".into(),
    }];
    page.statuses = vec![Choice {
        value: "open".into(),
        label_ja: "未対応".into(),
        label_en: "open".into(),
    }];
    page
}

impl Fake {
    fn record(&self, method: &'static str, p: Option<&Principal>, arg: &str) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(Call {
                method,
                account: p.map(|p| p.account_id.clone()),
                arg: arg.into(),
            });
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }

    pub fn called(&self, method: &str) -> bool {
        self.calls().iter().any(|c| c.method == method)
    }

    pub fn mutating_calls(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| MUTATING.contains(&c.method))
            .collect()
    }
}

impl Backend for Fake {
    async fn login(&self, id: &str, _password: &str, _c: &Client) -> BackendResult<LoginOutcome> {
        self.record("login", None, id);
        match id {
            "clerk" => Ok(LoginOutcome::LoggedIn {
                token: STAFF.into(),
                must_change_password: false,
            }),
            "newbie" => Ok(LoginOutcome::LoggedIn {
                token: MUST.into(),
                must_change_password: true,
            }),
            "slow" => Ok(LoginOutcome::Throttled {
                code: None,
                message_ja: "ログインの試行が多すぎます。".into(),
                message_en: "Too many attempts.".into(),
            }),
            "broken" => Err(BackendError::Internal),
            _ => Ok(LoginOutcome::Refused {
                code: None,
                message_ja: "IDまたはパスワードが違います。".into(),
                message_en: "Wrong ID or password.".into(),
            }),
        }
    }

    async fn session(&self, token: &str) -> BackendResult<Option<Principal>> {
        self.record("session", None, "");
        if token == "tok-broken" {
            return Err(BackendError::Internal);
        }
        Ok(principal(token))
    }

    async fn logout(&self, p: &Principal) -> BackendResult<()> {
        self.record("logout", Some(p), "");
        Ok(())
    }

    async fn change_password(&self, p: &Principal, old: &str, _new: &str) -> BackendResult<()> {
        self.record("change_password", Some(p), "");
        if old == "wrong-old-password" {
            return Err(BackendError::Invalid {
                code: None,
                message_ja: "今のパスワードが違います。".into(),
                message_en: "The current password is wrong.".into(),
            });
        }
        Ok(())
    }

    async fn change_password_at_login(
        &self,
        id: &str,
        old: &str,
        _new: &str,
        _c: &Client,
    ) -> BackendResult<()> {
        self.record("change_password_at_login", None, id);
        if old == "wrong-old-password" {
            return Err(BackendError::Invalid {
                code: None,
                message_ja: "IDまたはパスワードが違います。".into(),
                message_en: "Wrong ID or password.".into(),
            });
        }
        Ok(())
    }

    async fn switch_office(&self, p: &Principal, office: &str) -> BackendResult<()> {
        self.record("switch_office", Some(p), office);
        if office == "invalid" {
            return Err(invalid());
        }
        visible(office)
    }

    async fn ca_certificate(&self) -> Option<CaCertificate> {
        self.record("ca_certificate", None, "");
        Some(CaCertificate {
            pem: b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec(),
            fingerprint_sha256: "AB:CD:EF".into(),
            server_names: vec!["localhost".into(), NASTY.into()],
        })
    }

    async fn health_check(&self) -> HealthCheck {
        self.record("health_check", None, "");
        HealthCheck {
            ok: true,
            checks: vec![CheckResult {
                name: "store".into(),
                ok: true,
                detail: None,
            }],
        }
    }

    async fn metrics(
        &self,
        client: &Client,
        bearer: Option<&str>,
    ) -> BackendResult<Vec<MetricFamily>> {
        self.record("metrics", None, bearer.unwrap_or(""));
        if !client.address.is_loopback() && bearer != Some("sesame-sesame-sesame") {
            return Err(BackendError::Forbidden);
        }
        Ok(vec![MetricFamily {
            name: "kaigo_relay_submissions".into(),
            help: "Submissions by state".into(),
            kind: "gauge",
            samples: vec![(vec![("state".into(), "queued".into())], 2.0)],
        }])
    }

    async fn dashboard(&self, p: &Principal) -> BackendResult<Dashboard> {
        self.record("dashboard", Some(p), "");
        Ok(Dashboard {
            window: Some(WindowView {
                processing_month: "202612".into(),
                open: true,
                opens_at: "2026-12-01 00:00".into(),
                closes_at: "2026-12-11 00:00".into(),
                days_left: 8,
                hours_left: 3,
                held: 2,
            }),
            offices: p
                .offices
                .iter()
                .map(|o| OfficeSummary {
                    number: o.number.clone(),
                    name: o.name.clone(),
                    files: 7,
                    accepted: 3,
                    accepted_with_returns: 1,
                    rejected: 1,
                    arrived: 1,
                    in_progress: 0,
                    held: 0,
                    refused: 1,
                    needs_attention: 0,
                    open_returns: 4,
                    new_notices: 5,
                })
                .collect(),
            alerts: vec![AlertView {
                severity: "warning".into(),
                message_ja: format!("証明書の期限が近づいています {NASTY}"),
                message_en: "A certificate expires soon".into(),
                link: Some("/offices".into()),
                help: "/help/submissions#needs-attention".into(),
            }],
            health: HealthView {
                version: "0.1.0".into(),
                uptime: "3日 4時間".into(),
                drop_free: "12.3 GB".into(),
                drop_free_percent: 41,
                state_free: "0.9 GB".into(),
                state_free_percent: 6,
                memory: "1.2 GB / 4.0 GB".into(),
                process_memory: "24 MB".into(),
            },
            months: vec![
                MonthBar {
                    month: "202610".into(),
                    sent: 12,
                    returned: 2,
                },
                MonthBar {
                    month: "202611".into(),
                    sent: 14,
                    returned: 0,
                },
            ],
        })
    }

    async fn sessions(&self, p: &Principal) -> BackendResult<Vec<SessionView>> {
        self.record("sessions", Some(p), "");
        Ok(vec![
            SessionView {
                id: p.session_id.clone(),
                created_at: "2026-12-01 09:00".into(),
                last_seen_at: "2026-12-01 09:30".into(),
                address: "192.0.2.10".into(),
                user_agent: NASTY.into(),
                current: true,
            },
            SessionView {
                id: "sid-other".into(),
                created_at: "2026-11-30 17:00".into(),
                last_seen_at: "2026-11-30 17:10".into(),
                address: "192.0.2.11".into(),
                user_agent: "Mozilla/5.0".into(),
                current: false,
            },
        ])
    }

    async fn revoke_session(&self, p: &Principal, session_id: &str) -> BackendResult<()> {
        self.record("revoke_session", Some(p), session_id);
        by_id(session_id)
    }

    async fn accounts(&self, p: &Principal) -> BackendResult<Vec<AccountView>> {
        self.record("accounts", Some(p), "");
        let mut disabled = account_view("disabled01");
        disabled.disabled = true;
        let mut office_account = account_view("office01");
        office_account.role = Role::Office;
        office_account.role_ja = Role::Office.label_ja().into();
        office_account.office = Some(office(OFFICE_A, "さくら訪問介護"));
        office_account.grants.clear();
        office_account.locked_until = None;
        Ok(vec![account_view("staff01"), disabled, office_account])
    }

    async fn account(&self, p: &Principal, id: &str) -> BackendResult<AccountView> {
        self.record("account", Some(p), id);
        by_id(id)?;
        let mut a = account_view(id);
        if id == "disabled01" {
            a.disabled = true;
        }
        Ok(a)
    }

    async fn create_account(
        &self,
        p: &Principal,
        new: NewAccount,
    ) -> BackendResult<OneTimePassword> {
        self.record(
            "create_account",
            Some(p),
            &format!(
                "{}|{:?}|{:?}|{}|{:?}|{}",
                new.id,
                new.role,
                new.office,
                new.grants.join(","),
                new.corporation_name,
                new.corporation_offices.join(",")
            ),
        );
        if new.id == "taken" {
            return Err(BackendError::Invalid {
                code: None,
                message_ja: "このログインIDは使われています。".into(),
                message_en: "This login ID is taken.".into(),
            });
        }
        Ok(OneTimePassword {
            account_id: new.id,
            password: OTP.into(),
        })
    }

    async fn reset_password(&self, p: &Principal, id: &str) -> BackendResult<OneTimePassword> {
        self.record("reset_password", Some(p), id);
        by_id(id)?;
        Ok(OneTimePassword {
            account_id: id.into(),
            password: OTP.into(),
        })
    }

    async fn unlock(&self, p: &Principal, id: &str) -> BackendResult<()> {
        self.record("unlock", Some(p), id);
        by_id(id)
    }

    async fn set_grants(&self, p: &Principal, id: &str, offices: Vec<String>) -> BackendResult<()> {
        self.record(
            "set_grants",
            Some(p),
            &format!("{id}|{}", offices.join(",")),
        );
        by_id(id)
    }

    async fn set_disabled(&self, p: &Principal, id: &str, disabled: bool) -> BackendResult<()> {
        self.record("set_disabled", Some(p), &format!("{id}|{disabled}"));
        by_id(id)
    }

    async fn offices(&self, p: &Principal) -> BackendResult<Vec<OfficeView>> {
        self.record("offices", Some(p), "");
        let mut ended = office_view(OFFICE_B, None);
        ended.status = "ended".into();
        ended.ended_from_month = Some("202701".into());
        ended.successor = Some(OFFICE_EXTRA.into());
        Ok(vec![
            office_view(OFFICE_A, Some(120)),
            office_view(OFFICE_EXTRA, Some(0)),
            office_view("1310000035", Some(-3)),
            ended,
        ])
    }

    async fn office(&self, p: &Principal, number: &str) -> BackendResult<OfficeView> {
        self.record("office", Some(p), number);
        visible(number)?;
        by_id(number)?;
        Ok(office_view(number, Some(12)))
    }

    async fn submissions(
        &self,
        p: &Principal,
        q: &ListQuery,
    ) -> BackendResult<ListPage<SubmissionRow>> {
        self.record("submissions", Some(p), &query_arg(q));
        let office = q.office.as_str();
        visible(office)?;
        Ok(page_of(
            vec![
                submission_row(&format!("sub-{office}"), office),
                SubmissionRow {
                    processing_month: None,
                    receipt_id: None,
                    reception_mark: None,
                    office_number: None,
                    state: "refused".into(),
                    state_ja: "点検で不備".into(),
                    ..submission_row("sub-2", office)
                },
            ],
            q,
        ))
    }

    async fn resend(&self, p: &Principal, id: &str) -> BackendResult<ActionOutcome> {
        self.record("resend", Some(p), id);
        by_id(id)?;
        Ok(ActionOutcome {
            code: None,
            done: id != "refused",
            message_ja: format!("再送：{NASTY}"),
            message_en: "resent".into(),
        })
    }

    async fn withdraw(&self, p: &Principal, id: &str) -> BackendResult<ActionOutcome> {
        self.record("withdraw", Some(p), id);
        by_id(id)?;
        Ok(ActionOutcome {
            code: None,
            done: id != "refused",
            message_ja: format!("取消：{NASTY}"),
            message_en: "withdrawn".into(),
        })
    }

    async fn submission(&self, p: &Principal, id: &str) -> BackendResult<SubmissionDetail> {
        self.record("submission", Some(p), id);
        by_id(id)?;
        Ok(SubmissionDetail {
            row: submission_row(id, OFFICE_A),
            sha256: "ab".repeat(32),
            size: 4096,
            send_name: Some("KJ000001.CSV".into()),
            note_ja: Some("受付で一部の明細書が返戻になります。".into()),
            note_en: Some("Some statements will come back as returns.".into()),
            note_code: Some("relay.accepted_with_returns".into()),
            timeline: vec![TimelineEntry {
                at: "2026-12-01 09:00".into(),
                state_ja: "送信待ち".into(),
                detail: "取り込みました".into(),
            }],
            findings: vec![finding()],
            reception_errors: vec![
                FindingView {
                    severity: "error".into(),
                    code: "gateway.bad_insurer_number".into(),
                    record_no: Some(4),
                    ..finding()
                },
                FindingView {
                    severity: "error".into(),
                    code: "gateway.a_code_the_appliance_does_not_know".into(),
                    record_no: None,
                    ..finding()
                },
            ],
        })
    }

    async fn notices(&self, p: &Principal, q: &ListQuery) -> BackendResult<ListPage<NoticeRow>> {
        self.record("notices", Some(p), &query_arg(q));
        visible(&q.office)?;
        Ok(page_of(
            vec![
                notice_row("n-1", &q.office),
                NoticeRow {
                    unread: false,
                    inline: true,
                    media_type: "application/pdf".into(),
                    kind_ja: String::new(),
                    ..notice_row("n-pdf", &q.office)
                },
            ],
            q,
        ))
    }

    async fn notice(&self, p: &Principal, id: &str) -> BackendResult<NoticeDetail> {
        self.record("notice", Some(p), id);
        by_id(id)?;
        let text = id == "n-text";
        Ok(NoticeDetail {
            row: notice_row(id, OFFICE_A),
            sha256: "cd".repeat(32),
            tables: if text {
                Vec::new()
            } else {
                vec![
                    NoticeTable {
                        title: "明細".into(),
                        columns: vec!["被保険者番号".into(), "氏名".into(), "事由".into()],
                        rows: vec![vec!["0000000019".into(), NASTY.into(), "A".into()]],
                    },
                    NoticeTable {
                        title: "合計".into(),
                        columns: vec!["件数".into()],
                        rows: Vec::new(),
                    },
                ]
            },
            text: text.then(|| format!("お知らせ\n{NASTY}\n")),
        })
    }

    async fn notice_download(
        &self,
        p: &Principal,
        id: &str,
        utf8: bool,
    ) -> BackendResult<Download> {
        self.record("notice_download", Some(p), &format!("{id}|{utf8}"));
        by_id(id)?;
        if id == "n-pdf" {
            return Ok(Download {
                file_name: "支払決定額通知書 202611.pdf".into(),
                content_type: "application/pdf".into(),
                bytes: b"%PDF-1.4\n%%EOF\n".to_vec(),
            });
        }
        Ok(Download {
            file_name: if utf8 {
                "返戻一覧 202611 (UTF-8).csv".into()
            } else {
                "返戻一覧 202611.csv".into()
            },
            content_type: if utf8 {
                "text/csv; charset=utf-8".into()
            } else {
                "text/csv; charset=Shift_JIS".into()
            },
            bytes: b"a,b\r\n".to_vec(),
        })
    }

    async fn returns(&self, p: &Principal, q: &ListQuery) -> BackendResult<ListPage<ReturnRow>> {
        self.record("returns", Some(p), &query_arg(q));
        let office = q.office.as_str();
        visible(office)?;
        let open = ReturnRow {
            id: "ret-1".into(),
            office_number: office.into(),
            insured_number: "0000000019".into(),
            insured_name: NASTY.into(),
            processing_month: "202611".into(),
            form: "給".into(),
            form_ja: "給付管理票".into(),
            form_en: "care plan".into(),
            insurer_number: "139998".into(),
            notice_id: "n-1".into(),
            service_month: "202610".into(),
            reason_code: "A".into(),
            content: "資格喪失後のサービス".into(),
            status: "open".into(),
            status_ja: "未対応".into(),
            status_en: "open".into(),
            linked_submission: None,
            note: None,
        };
        let closed = ReturnRow {
            id: "ret-2".into(),
            status: "closed".into(),
            status_ja: "完了（手動）".into(),
            linked_submission: Some("sub-9".into()),
            note: Some("電話で確認済み".into()),
            ..open.clone()
        };
        Ok(page_of(vec![open, closed], q))
    }

    async fn close_return(&self, p: &Principal, id: &str, note: &str) -> BackendResult<()> {
        self.record("close_return", Some(p), &format!("{id}|{note}"));
        by_id(id)
    }

    async fn system(&self, p: &Principal) -> BackendResult<SystemView> {
        self.record("system", Some(p), "");
        Ok(SystemView {
            health: HealthView {
                version: "0.1.0".into(),
                uptime: "3日 4時間".into(),
                drop_free: "12.3 GB".into(),
                drop_free_percent: 40,
                state_free: "12.3 GB".into(),
                state_free_percent: 40,
                memory: "1.2 GB / 4.0 GB".into(),
                process_memory: "24 MB".into(),
            },
            started_at: "2026年11月30日 06:00".into(),
            store_path: "/var/lib/kaigo-relay/store.redb".into(),
            store_size: "120 MB".into(),
            schema_version: 6,
            notices: 1234,
            drop_dir: "/srv/kaigo-relay/drop".into(),
            state_dir: "/var/lib/kaigo-relay".into(),
            log: vec![
                LogLine {
                    at: "2026-12-03 10:05:07".into(),
                    level: "WARN".into(),
                    target: "kaigo_relay::relay".into(),
                    text: format!("gateway slow {NASTY}"),
                    help: None,
                },
                LogLine {
                    at: "2026-12-03 10:05:01".into(),
                    level: "ERROR".into(),
                    target: "kaigo_relay::intake".into(),
                    text: "disk full".into(),
                    help: Some("/help/code/system.disk_low".into()),
                },
            ],
            audit: Vec::new(),
        })
    }

    async fn audit_log(&self, p: &Principal, limit: usize) -> BackendResult<Vec<AuditRow>> {
        self.record("audit_log", Some(p), &limit.to_string());
        Ok(vec![
            AuditRow {
                seq: 2,
                at: "2026-12-01 09:00".into(),
                actor: Some("admin".into()),
                address: Some("192.0.2.10".into()),
                action: "account.reset".into(),
                target: Some("staff01".into()),
                detail: NASTY.into(),
            },
            AuditRow {
                seq: 1,
                at: "2026-12-01 08:00".into(),
                actor: None,
                address: None,
                action: "startup".into(),
                target: None,
                detail: String::new(),
            },
        ])
    }

    async fn backups(&self, p: &Principal) -> BackendResult<BackupsView> {
        self.record("backups", Some(p), "");
        Ok(BackupsView {
            sites: vec![
                BackupSiteView {
                    name: "usb".into(),
                    location: "/mnt/usb/kaigo-relay".into(),
                    encrypted: false,
                    last_attempt: Some("2026年12月3日 09:00".into()),
                    last_attempt_ok: true,
                    last_verified: Some("#12 2026年12月3日 09:00".into()),
                    size: Some("120.0 MiB".into()),
                    last_drill: Some("2026年12月2日 03:00".into()),
                    last_drill_ok: true,
                    error: None,
                    error_help: None,
                    stale: false,
                },
                BackupSiteView {
                    name: "cloud".into(),
                    location: "s3://bucket/office (https://s3.example.jp)".into(),
                    encrypted: true,
                    last_attempt: Some("2026年12月3日 09:00".into()),
                    last_attempt_ok: false,
                    last_verified: None,
                    size: None,
                    last_drill: None,
                    last_drill_ok: false,
                    error: Some(NASTY.into()),
                    error_help: Some("/help/code/backup.site_write".into()),
                    stale: true,
                },
            ],
            runs: vec![BackupRunRow {
                seq: 12,
                at: "2026年12月3日 09:00".into(),
                reason: "定期 (schedule)".into(),
                size: "120.0 MiB".into(),
                seconds: "3.2".into(),
                sites_ok: 1,
                sites_total: 2,
                errors: vec![admin_ui::ExplainedText {
                    text: NASTY.into(),
                    help: Some("/help/code/backup.site_write".into()),
                }],
            }],
            key: Some(BackupKeyView {
                id: "0123456789abcdef".into(),
                confirmed: false,
            }),
            interval_hours: "1".into(),
        })
    }

    async fn backup_now(&self, p: &Principal) -> BackendResult<ActionOutcome> {
        self.record("backup_now", Some(p), "");
        Ok(ActionOutcome {
            code: None,
            done: true,
            message_ja: String::new(),
            message_en: String::new(),
        })
    }

    async fn backup_key_download(&self, p: &Principal) -> BackendResult<Download> {
        self.record("backup_key_download", Some(p), "");
        Ok(Download {
            file_name: "kaigo-relay-backup-key-0123456789abcdef.txt".into(),
            content_type: "text/plain; charset=utf-8".into(),
            bytes: b"key-id: 0123456789abcdef\n".to_vec(),
        })
    }

    async fn restore_backup(
        &self,
        p: &Principal,
        site: &str,
        seq: Option<u64>,
    ) -> BackendResult<ActionOutcome> {
        self.record("restore_backup", Some(p), &format!("{site}#{seq:?}"));
        let done = site == "usb";
        Ok(ActionOutcome {
            code: None,
            done,
            message_ja: if done {
                "再起動します。".into()
            } else {
                "戻せませんでした。".into()
            },
            message_en: if done {
                "Restarting.".into()
            } else {
                "Not restored.".into()
            },
        })
    }

    async fn confirm_backup_key(
        &self,
        p: &Principal,
        key_id: &str,
    ) -> BackendResult<ActionOutcome> {
        self.record("confirm_backup_key", Some(p), key_id);
        let done = key_id == "0123456789abcdef";
        Ok(ActionOutcome {
            code: None,
            done,
            message_ja: if done {
                "記録しました。".into()
            } else {
                "鍵IDが違います。".into()
            },
            message_en: if done {
                "Recorded.".into()
            } else {
                "Wrong key ID.".into()
            },
        })
    }

    async fn alert_prefs(&self, p: &Principal) -> BackendResult<AlertPrefsView> {
        self.record("alert_prefs", Some(p), "");
        Ok(AlertPrefsView {
            email: format!("{}@example.jp", p.account_id),
            groups: vec![
                AlertGroupChoice {
                    value: "returns".into(),
                    ja: "新しい返戻".into(),
                    en: "new returns".into(),
                    checked: true,
                },
                AlertGroupChoice {
                    value: "payment".into(),
                    ja: NASTY.into(),
                    en: "payment".into(),
                    checked: false,
                },
            ],
            digest: false,
            language: "ja".into(),
            mail_configured: p.is_admin,
            digest_at: "08:00".into(),
        })
    }

    async fn set_alert_prefs(&self, p: &Principal, prefs: AlertPrefsForm) -> BackendResult<()> {
        self.record(
            "set_alert_prefs",
            Some(p),
            &format!(
                "{}|{}|{}|{}",
                prefs.email,
                prefs.groups.join(","),
                prefs.digest,
                prefs.language
            ),
        );
        if prefs.email.contains(' ') {
            return Err(BackendError::Invalid {
                code: None,
                message_ja: "メールアドレスが正しくありません。".into(),
                message_en: "Not a mail address.".into(),
            });
        }
        Ok(())
    }

    async fn alerts(&self, p: &Principal) -> BackendResult<AlertsView> {
        self.record("alerts", Some(p), "");
        Ok(AlertsView {
            current: vec![AlertRow {
                title_ja: "受付締切が近づいています".into(),
                title_en: "Window closing".into(),
                severity: "error".into(),
                offices: NASTY.into(),
                message_ja: NASTY.into(),
                message_en: "Send it.".into(),
                raised_at: "2026年12月10日 12:00".into(),
                link: "/".into(),
            }],
            deliveries: if p.is_admin {
                vec![DeliveryRow {
                    at: "2026年12月10日 12:01".into(),
                    what_ja: "受付締切が近づいています".into(),
                    what_en: "Window closing".into(),
                    destination: "mail:a@example.jp".into(),
                    state: "gave_up".into(),
                    state_ja: "届けられませんでした".into(),
                    state_en: "gave up".into(),
                    error: NASTY.into(),
                    error_help: Some("/help/code/alerts.mail_refused".into()),
                }]
            } else {
                Vec::new()
            },
            mail_configured: p.is_admin,
            webhooks: vec!["chat".into()],
            recipients: vec!["本部 <honbu@example.jp>".into()],
        })
    }

    async fn send_test_alert(&self, p: &Principal) -> BackendResult<Vec<TestAlertRow>> {
        self.record("send_test_alert", Some(p), "");
        Ok(vec![
            TestAlertRow {
                destination: "mail:a@example.jp".into(),
                ok: true,
                error: String::new(),
                error_help: None,
            },
            TestAlertRow {
                destination: "webhook:chat".into(),
                ok: false,
                error: NASTY.into(),
                error_help: Some("/help/code/alerts.webhook_failed".into()),
            },
        ])
    }
}

// ---- requests ---------------------------------------------------------------------------

pub const HOST: &str = "kaigo.local:8443";

pub fn client() -> Client {
    Client {
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        user_agent: "test-agent".into(),
    }
}

/// A request being built.
#[derive(Debug)]
pub struct Req {
    method: &'static str,
    path: String,
    cookies: Vec<String>,
    form: Vec<(String, String)>,
    headers: Vec<(&'static str, String)>,
    raw_body: Option<Vec<u8>>,
}

pub fn get(path: &str) -> Req {
    Req {
        method: "GET",
        path: path.into(),
        cookies: Vec::new(),
        form: Vec::new(),
        headers: Vec::new(),
        raw_body: None,
    }
}

pub fn post(path: &str) -> Req {
    Req {
        method: "POST",
        ..get(path)
    }
}

impl Req {
    pub fn method(mut self, m: &'static str) -> Req {
        self.method = m;
        self
    }

    /// The session cookie of `token`.
    pub fn session(self, token: &str) -> Req {
        self.cookie(SESSION_COOKIE, token)
    }

    /// The session cookie and the session's CSRF token in the form.
    pub fn with_user(self, token: &str) -> Req {
        let csrf = principal(token).map(|p| p.csrf_token).unwrap_or_default();
        self.session(token).field("csrf_token", &csrf)
    }

    pub fn cookie(mut self, name: &str, value: &str) -> Req {
        self.cookies.push(format!("{name}={value}"));
        self
    }

    pub fn field(mut self, k: &str, v: &str) -> Req {
        self.form.push((k.into(), v.into()));
        self
    }

    pub fn header(mut self, k: &'static str, v: &str) -> Req {
        self.headers.push((k, v.into()));
        self
    }

    pub fn body(mut self, b: Vec<u8>) -> Req {
        self.raw_body = Some(b);
        self
    }

    pub fn build(self) -> Request<Bytes> {
        let mut b = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header("host", HOST);
        if !self.cookies.is_empty() {
            b = b.header("cookie", self.cookies.join("; "));
        }
        for (k, v) in &self.headers {
            b = b.header(*k, v);
        }
        let body = match self.raw_body {
            Some(raw) => raw,
            None if self.method == "POST" => {
                b = b.header("content-type", "application/x-www-form-urlencoded");
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&self.form)
                    .finish()
                    .into_bytes()
            }
            None => Vec::new(),
        };
        b.body(Bytes::from(body)).unwrap()
    }

    pub async fn send(self, ui: &AdminUi<Fake>) -> Answer {
        let resp = ui.handle(self.build(), client()).await;
        Answer::from(resp).await
    }
}

/// A response, with its body read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body as sent (for downloads that are not UTF-8).
    pub bytes: Bytes,
}

impl Answer {
    pub async fn from(resp: Response<Full<Bytes>>) -> Answer {
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// The `Set-Cookie` for `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of the hidden `csrf_token` field of the page.
    pub fn csrf_field(&self) -> Option<String> {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self.body.find(marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_owned())
    }

    /// The page's template (`page-…` class of `<main>`).
    pub fn page(&self) -> Option<String> {
        let marker = "<main class=\"page-";
        let start = self.body.find(marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_owned())
    }
}

pub fn ui() -> (AdminUi<Fake>, std::sync::Arc<Fake>) {
    let fake = std::sync::Arc::new(Fake::default());
    let ui = AdminUi::new(std::sync::Arc::clone(&fake)).unwrap();
    (ui, fake)
}

/// A concrete path for a route pattern (IDs the fake answers normally).
pub fn concrete(pattern: &str) -> String {
    pattern
        .replace("{id}", "staff01")
        .replace("{number}", OFFICE_A)
        .replace("{code}", "file.utf8")
        .replace("{topic}", "submissions")
}

/// The fields a POST route needs to succeed, besides the CSRF token.
pub fn fields_for(path: &str) -> Vec<(&'static str, &'static str)> {
    match path {
        "/login" => vec![("id", "clerk"), ("password", "correct horse battery")],
        "/login/password" | "/account/password" => vec![
            ("id", "clerk"),
            ("old_password", "old-password-1"),
            ("new_password", "new-password-12"),
            ("new_password_confirm", "new-password-12"),
        ],
        "/office" => vec![("office", OFFICE_B)],
        "/account/sessions/revoke" => vec![("session_id", "sid-other")],
        "/accounts" => vec![
            ("id", "staff02"),
            ("display_name", "介護 花子"),
            ("role", "staff"),
            ("grants", OFFICE_A),
        ],
        "/accounts/{id}/grants" => vec![("office", OFFICE_A), ("office", OFFICE_B)],
        "/returns/{id}/close" => vec![("note", "電話で確認しました"), ("office", OFFICE_A)],
        "/submissions/{id}/withdraw" => vec![("confirm", "1")],
        "/backups/key/confirm" => vec![("key_id", "0123456789abcdef")],
        "/account/alerts" => vec![
            ("email", "clerk@example.jp"),
            ("group", "returns"),
            ("group", "payment"),
            ("digest", "1"),
            ("language", "both"),
        ],
        "/backups/restore" => vec![("site", "usb"), ("confirm", "1")],
        _ => Vec::new(),
    }
}
