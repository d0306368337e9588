//! The catalogue of alert kinds: every kind the daemon raises, the group a person subscribes
//! to, its title in Japanese and English, what to do about it in general, and the admin UI page
//! it links to. Delivery, routing and the UI all read this one list.
//!
//! Invariant: every kind raised anywhere is in [`KINDS`] (a test walks the raisers' kind
//! names); a kind not listed is delivered under the `system` group with a generic title rather
//! than dropped.

use serde::{Deserialize, Serialize};

/// What a person subscribes to: a few groups of kinds, in the words of a care office.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// 請求ファイルのエラー・送信できない・受付不可.
    Claims,
    /// 受付期間の締切が近いのに未送信の事業所.
    Window,
    /// 返戻一覧の新しい返戻.
    Returns,
    /// 支払決定額通知書などの支払系の通知.
    Payment,
    /// 届くはずの通知が届かない.
    Notices,
    /// クライアント証明書の期限.
    Certificate,
    /// バックアップ.
    Backup,
    /// ディスク、通知の配信など装置そのもの.
    System,
}

impl Group {
    /// Every group, in the order the UI lists them.
    pub const ALL: [Group; 8] = [
        Group::Claims,
        Group::Window,
        Group::Returns,
        Group::Payment,
        Group::Notices,
        Group::Certificate,
        Group::Backup,
        Group::System,
    ];

    /// The name used in the config file and forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Claims => "claims",
            Group::Window => "window",
            Group::Returns => "returns",
            Group::Payment => "payment",
            Group::Notices => "notices",
            Group::Certificate => "certificate",
            Group::Backup => "backup",
            Group::System => "system",
        }
    }

    /// The group named `name`.
    pub fn from_name(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.as_str() == name)
    }

    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            Group::Claims => "請求ファイルのエラー・送信できない請求",
            Group::Window => "受付締切が近いのに未送信",
            Group::Returns => "新しい返戻",
            Group::Payment => "支払の通知",
            Group::Notices => "届かない通知",
            Group::Certificate => "証明書の期限",
            Group::Backup => "バックアップ",
            Group::System => "装置（ディスクなど）",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self {
            Group::Claims => "claim files refused or not sendable",
            Group::Window => "window closing with claims unsent",
            Group::Returns => "new returns",
            Group::Payment => "payment notices",
            Group::Notices => "missing notices",
            Group::Certificate => "certificate expiry",
            Group::Backup => "backups",
            Group::System => "the appliance (disk, …)",
        }
    }

    /// What a role receives when its account has not chosen: the office's work for office
    /// people, everything for the administrator.
    pub fn default_for_office_people(self) -> bool {
        matches!(
            self,
            Group::Claims | Group::Window | Group::Returns | Group::Payment | Group::Notices
        )
    }
}

/// One kind of alert.
#[derive(Debug)]
pub struct Kind {
    /// The name stored with the alert (`window_closing`).
    pub name: &'static str,
    /// Who subscribes to it.
    pub group: Group,
    /// A condition (raised, then resolved) or a one-time event.
    pub condition: bool,
    /// Subject line, Japanese.
    pub title_ja: &'static str,
    /// Subject line, English.
    pub title_en: &'static str,
    /// What to do, in general (for recipients who see only their offices), Japanese.
    pub todo_ja: &'static str,
    /// The same in English.
    pub todo_en: &'static str,
    /// What raises it (for the manual and the issue note).
    pub trigger: &'static str,
    /// The admin UI page it links to when the alert names no page of its own.
    pub page: &'static str,
}

/// Every alert kind the daemon raises.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "claim_refused",
        group: Group::Claims,
        condition: false,
        title_ja: "請求ファイルにエラーがあり送信していません",
        title_en: "A claim file has errors and was not sent",
        todo_ja: "管理画面でエラーの内容を確認し、請求ソフトで直してから投入フォルダーに保存し直してください。",
        todo_en: "See the errors on the admin UI, correct them in the billing software and save the file to the drop folder again.",
        trigger: "intake: the claim checker refused a dropped file (state refused)",
        page: "/submissions",
    },
    Kind {
        name: "claim_failed",
        group: Group::Claims,
        condition: false,
        title_ja: "請求を国保連に送信できません（要対応）",
        title_en: "A claim cannot be sent to the federation (needs a person)",
        todo_ja: "管理画面で理由を確認してください。ID・パスワードや証明書を直したあと、画面から再送できます。",
        todo_en: "See the reason on the admin UI. After fixing the user ID, password or certificate you can resend it from there.",
        trigger: "relay: a submission gave up (state failed_needs_attention: credentials, certificate, gateway refusal)",
        page: "/submissions",
    },
    Kind {
        name: "claim_rejected",
        group: Group::Claims,
        condition: false,
        title_ja: "国保連の受付結果が「受付不可」でした",
        title_en: "The federation rejected a claim (受付不可)",
        todo_ja: "管理画面で受付結果を確認し、請求ソフトで直して再送してください。",
        todo_en: "See the reception result on the admin UI, correct the claim and send it again.",
        trigger: "relay: the 受付 result of a submission was × (state rejected)",
        page: "/submissions",
    },
    Kind {
        name: "window_closing",
        group: Group::Window,
        condition: true,
        title_ja: "受付締切が近づいています（未送信の事業所があります）",
        title_en: "The reception window is closing with offices that have sent nothing",
        todo_ja: "請求ソフトで今月の請求ファイルを作成し、投入フォルダーに保存してください。",
        todo_en: "Create this month's claim files in the billing software and save them to the drop folder.",
        trigger: "deadline: relay.window_closing_alert_hours before the window closes, an office has no claim at the federation",
        page: "/",
    },
    Kind {
        name: "returns_new",
        group: Group::Returns,
        condition: false,
        title_ja: "返戻一覧に新しい返戻があります",
        title_en: "New returns in the returns list (返戻一覧)",
        todo_ja: "管理画面の「返戻」で内容を確認し、直して再請求してください。",
        todo_en: "See them on the Returns page, correct them and claim again.",
        trigger: "mirror: a newly stored 返戻（保留）一覧 (7411/7421) has one or more rows",
        page: "/returns",
    },
    Kind {
        name: "payment_notice",
        group: Group::Payment,
        condition: false,
        title_ja: "支払の通知が届きました",
        title_en: "A payment notice has arrived",
        todo_ja: "管理画面の「通知」で支払決定額などを確認してください。",
        todo_en: "See the amounts on the Notices page.",
        trigger: "mirror: the first payment-cycle notice (7513, 7521, 7611…) of a month for an office is stored",
        page: "/notices",
    },
    Kind {
        name: "notice_missing",
        group: Group::Notices,
        condition: true,
        title_ja: "届くはずの通知がまだ届いていません",
        title_en: "An expected notice has not arrived",
        todo_ja: "国保連の電子請求受付システムで通知が出ているか確認し、出ていない場合は国保連に問い合わせてください。",
        todo_en: "Check the federation's portal; if the notice is not there either, ask the federation.",
        trigger: "mirror: the month-end (返戻系) or payment notices of a month with a claim are past their due time",
        page: "/notices",
    },
    Kind {
        name: "certificate_expiring",
        group: Group::Certificate,
        condition: true,
        title_ja: "クライアント証明書の有効期限が近づいています",
        title_en: "A client certificate is about to expire",
        todo_ja: "国保連の電子請求受付システムで新しい証明書を取得し、システム管理者が装置に登録してください（運用の手引き「4. 電子証明書」の更新の手順）。",
        todo_en: "Get a new certificate from the federation's portal; the system administrator then gives it to the appliance (operations manual, \"4. Client certificates\", renewing).",
        trigger: "alerts sweep: an office's client certificate expires within alerts.certificate_warning_days (or has expired)",
        page: "/offices",
    },
    Kind {
        name: "backup_stale",
        group: Group::Backup,
        condition: true,
        title_ja: "バックアップが作られていません",
        title_en: "No recent verified backup",
        todo_ja: "保存先がつながっているか確認し、管理画面の「バックアップ」から今すぐ実行してください。",
        todo_en: "Check that the site is reachable and run a backup from the Backups page.",
        trigger: "backup: a site's newest verified copy is older than backup.max_copy_age_hours",
        page: "/backups",
    },
    Kind {
        name: "backup_drill_stale",
        group: Group::Backup,
        condition: true,
        title_ja: "バックアップの復元テストが成功していません",
        title_en: "No successful restore drill",
        todo_ja: "管理画面の「バックアップ」で復元テストの結果を確認してください。",
        todo_en: "See the drill results on the Backups page.",
        trigger: "backup: a site's last good restore drill is older than backup.max_drill_age_hours",
        page: "/backups",
    },
    Kind {
        name: "backup_key_not_exported",
        group: Group::Backup,
        condition: true,
        title_ja: "バックアップの暗号化の鍵が書き出されていません",
        title_en: "The backup encryption key has not been exported",
        todo_ja: "管理画面の「バックアップ」で鍵を書き出し、装置とは別の場所に保管してください。",
        todo_en: "Export the key on the Backups page and keep it away from the appliance.",
        trigger: "backup: encrypted sites are configured and the key's export was not confirmed",
        page: "/backups",
    },
    Kind {
        name: "disk_low",
        group: Group::System,
        condition: true,
        title_ja: "ディスクの空きが少なくなっています",
        title_en: "Disk space is low",
        todo_ja: "不要なファイルを消すかディスクを増やしてください。空きが戻れば自動で再開します。",
        todo_en: "Free some space or enlarge the disk; work resumes by itself.",
        trigger: "disk guard: the state or drop volume has less than disk.min_free_mib free",
        page: "/system",
    },
    Kind {
        name: "test",
        group: Group::System,
        condition: false,
        title_ja: "テスト通知",
        title_en: "Test alert",
        todo_ja: "この通知が届いていれば、通知の設定は正しく動いています。",
        todo_en: "If you received this, alert delivery works.",
        trigger: "a person: the 「テスト通知を送る」 button or `kaigo-relay alert test`",
        page: "/alerts",
    },
];

/// The kind named `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The group of a kind name (`system` for a name not in the catalogue).
pub fn group_of(name: &str) -> Group {
    kind(name).map_or(Group::System, |k| k.group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_groups_round_trip() {
        let mut names: Vec<_> = KINDS.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        for g in Group::ALL {
            assert_eq!(Group::from_name(g.as_str()), Some(g));
        }
        assert_eq!(group_of("nonexistent"), Group::System);
    }

    /// Every kind a raiser names is catalogued, and every catalogued kind is raised somewhere.
    #[test]
    fn every_raised_kind_is_catalogued() {
        let sources = [
            include_str!("../deadline.rs"),
            include_str!("../disk_guard.rs"),
            include_str!("../mirror.rs"),
            include_str!("../backup/mod.rs"),
            include_str!("events.rs"),
            include_str!("sweep.rs"),
            include_str!("trial.rs"),
        ];
        let all = sources.concat();
        // Conditions name their kind in the `Alert` they raise; the backup's helper takes it
        // as a `backup_…` literal; events name it first in their match arms.
        let mut named = Vec::new();
        for part in all.split("kind: \"").skip(1) {
            named.push(part.split('"').next().unwrap_or_default().to_owned());
        }
        let backup = include_str!("../backup/mod.rs");
        for part in backup
            .split("alert(")
            .skip(1)
            .chain(backup.split("let k = ").skip(1))
        {
            let head: String = part.chars().take(120).collect();
            if let Some(rest) = head.split("\"backup_").nth(1) {
                let rest = rest.split('"').next().unwrap_or_default();
                if !rest.contains('/') {
                    named.push(format!("backup_{rest}"));
                }
            }
        }
        for state in [
            crate::submission::State::Refused,
            crate::submission::State::FailedNeedsAttention,
            crate::submission::State::Rejected,
        ] {
            let mut sub = crate::submission::Submission::new(
                "A.CSV".into(),
                "00".into(),
                1,
                jiff::Timestamp::now(),
            );
            sub.state = state;
            let m = super::super::events::submission_message(&sub).expect("an event");
            named.push(m.kind);
        }
        assert!(
            named.len() >= 10,
            "the walk found the raisers' kinds: {named:?}"
        );
        for name in &named {
            assert!(
                kind(name).is_some(),
                "kind {name} is raised but not catalogued"
            );
        }
        for k in KINDS {
            assert!(
                all.contains(&format!("\"{}\"", k.name)),
                "kind {} is catalogued but raised nowhere",
                k.name
            );
        }
    }

    /// Every alert kind has its entry in the help catalogue (the home page and the mails link
    /// to it), and the catalogue has no alert the program cannot raise.
    #[test]
    fn every_kind_is_explained_in_the_help_catalogue() {
        for k in KINDS {
            let code = format!("alert.{}", k.name);
            assert!(
                admin_ui::help::find(&code).is_some(),
                "alert kind {} has no help catalogue entry {code}",
                k.name
            );
        }
        for e in admin_ui::help::entries() {
            if let Some(name) = e.code.strip_prefix("alert.") {
                assert!(kind(name).is_some(), "{} names no alert kind", e.code);
            }
        }
    }
}
