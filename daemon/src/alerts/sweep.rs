//! Conditions nobody else watches, looked at by the dispatcher every hour: a client
//! certificate that expires within `alerts.certificate_warning_days` (or has expired).
//!
//! Invariant: one alert per office's certificate (`certificate_expiring/<office>`), raised
//! while the certificate is inside the warning period and resolved when a newer one is
//! registered, the office ends, or the office is removed.

use jiff::Timestamp;

use super::{Alert, raise, resolve};
use crate::store::{Store, StoreError};

/// Raises or resolves the certificate alerts of every office.
pub fn check_certificates(
    store: &Store,
    warning_days: u32,
    now: Timestamp,
) -> Result<(), StoreError> {
    let offices = store.office_records()?;
    let mut keys = Vec::new();
    for o in &offices {
        let key = format!("certificate_expiring/{}", o.office_number);
        keys.push(key.clone());
        let z = now.to_zoned_datetime(crate::timefmt::jst());
        let this_month = crate::claim::Month::new(z.year(), z.month());
        let ended = o
            .ended_from_month
            .is_some_and(|m| this_month.is_some_and(|t| t >= m));
        let Some(cert) = o.certificate.as_ref().filter(|_| !ended) else {
            resolve(store, &key)?;
            continue;
        };
        let secs = cert.not_after.as_second() - now.as_second();
        let days = secs.div_euclid(86_400);
        if days >= i64::from(warning_days) {
            resolve(store, &key)?;
            continue;
        }
        let until = crate::timefmt::jst_minutes(cert.not_after);
        let until_en = crate::timefmt::jst_minutes_en(cert.not_after);
        let name = &o.name;
        let number = &o.office_number;
        let (severity, ja, en) = if secs <= 0 {
            (
                "error",
                format!(
                    "{name}（{number}）のクライアント証明書は {until} に期限が切れました。請求も通知の取得もできません。国保連の電子請求受付システムで新しい証明書を取得し、システム管理者が装置に登録してください（運用の手引き「4. 電子証明書」の更新の手順）。"
                ),
                format!(
                    "The client certificate of {name} ({number}) expired at {until_en}; claims cannot be sent nor notices fetched. Get a new certificate from the federation's portal; the system administrator then gives it to the appliance (operations manual, \"4. Client certificates\", renewing)."
                ),
            )
        } else {
            (
                "warning",
                format!(
                    "{name}（{number}）のクライアント証明書の有効期限は {until} です（あと {days} 日）。期限が切れると請求を送れません。国保連の電子請求受付システムで新しい証明書を取得し、システム管理者が装置に登録してください（運用の手引き「4. 電子証明書」の更新の手順）。"
                ),
                format!(
                    "The client certificate of {name} ({number}) expires at {until_en} ({days} days left); after that claims cannot be sent. Get a new certificate from the federation's portal; the system administrator then gives it to the appliance (operations manual, \"4. Client certificates\", renewing)."
                ),
            )
        };
        raise(
            store,
            Alert {
                key,
                kind: "certificate_expiring".into(),
                severity: severity.into(),
                offices: vec![number.clone()],
                message_ja: ja,
                message_en: en,
                raised_at: now,
                updated_at: now,
            },
        )?;
    }
    // Offices no longer registered.
    for (key, _) in store.alerts()? {
        if key.starts_with("certificate_expiring/") && !keys.contains(&key) {
            resolve(store, &key)?;
        }
    }
    Ok(())
}
