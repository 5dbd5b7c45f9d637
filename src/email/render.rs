//! The emails' templates (files under `templates/email/`, compiled in) and
//! their rendering to a subject, a plain-text and an HTML body.
//!
//! Each kind has `<kind>.txt`, whose first line is `Subject: ...`, and
//! `<kind>.html`, which extends `base.html`. HTML templates escape every
//! value; text templates do not.

use minijinja::Environment;
use serde::Serialize;

use super::Kind;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/email/base.html")),
    (
        "order_confirmation.txt",
        include_str!("../../templates/email/order_confirmation.txt"),
    ),
    (
        "order_confirmation.html",
        include_str!("../../templates/email/order_confirmation.html"),
    ),
    (
        "hold_expired.txt",
        include_str!("../../templates/email/hold_expired.txt"),
    ),
    (
        "hold_expired.html",
        include_str!("../../templates/email/hold_expired.html"),
    ),
    (
        "order_cancelled.txt",
        include_str!("../../templates/email/order_cancelled.txt"),
    ),
    (
        "order_cancelled.html",
        include_str!("../../templates/email/order_cancelled.html"),
    ),
    (
        "payment_received.txt",
        include_str!("../../templates/email/payment_received.txt"),
    ),
    (
        "payment_received.html",
        include_str!("../../templates/email/payment_received.html"),
    ),
    (
        "payment_failed.txt",
        include_str!("../../templates/email/payment_failed.txt"),
    ),
    (
        "payment_failed.html",
        include_str!("../../templates/email/payment_failed.html"),
    ),
    (
        "order_refunded.txt",
        include_str!("../../templates/email/order_refunded.txt"),
    ),
    (
        "order_refunded.html",
        include_str!("../../templates/email/order_refunded.html"),
    ),
    (
        "verify_email.txt",
        include_str!("../../templates/email/verify_email.txt"),
    ),
    (
        "verify_email.html",
        include_str!("../../templates/email/verify_email.html"),
    ),
    (
        "password_reset.txt",
        include_str!("../../templates/email/password_reset.txt"),
    ),
    (
        "password_reset.html",
        include_str!("../../templates/email/password_reset.html"),
    ),
    (
        "seller_daily_digest.txt",
        include_str!("../../templates/email/seller_daily_digest.txt"),
    ),
    (
        "seller_daily_digest.html",
        include_str!("../../templates/email/seller_daily_digest.html"),
    ),
    (
        "seller_monthly_report.txt",
        include_str!("../../templates/email/seller_monthly_report.txt"),
    ),
    (
        "seller_monthly_report.html",
        include_str!("../../templates/email/seller_monthly_report.html"),
    ),
    (
        "new_products.txt",
        include_str!("../../templates/email/new_products.txt"),
    ),
    (
        "new_products.html",
        include_str!("../../templates/email/new_products.html"),
    ),
];

/// A rendered email, ready for a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles every template; a broken one is a build-time mistake, caught
    /// by the unit tests below.
    pub fn new() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Templates { env })
    }

    /// Renders one kind of email with `ctx`.
    pub fn render(&self, kind: Kind, ctx: &impl Serialize) -> Result<Rendered, minijinja::Error> {
        let ctx = minijinja::Value::from(minijinja::value::Serde(ctx));
        let text = self
            .env
            .get_template(&format!("{}.txt", kind.as_str()))?
            .render(&ctx)?;
        let (subject, text) = split_subject(&text).ok_or_else(|| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                "a text template must start with a `Subject:` line",
            )
        })?;
        let ctx = minijinja::context! { subject => subject.clone(), ..ctx };
        let html = self
            .env
            .get_template(&format!("{}.html", kind.as_str()))?
            .render(ctx)?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// `Subject: x\n\nbody` into `("x", "body")`.
fn split_subject(text: &str) -> Option<(String, String)> {
    let (first, rest) = text.split_once('\n')?;
    let subject = first.strip_prefix("Subject:")?.trim();
    Some((
        subject.to_string(),
        rest.trim_start_matches('\n').to_string(),
    ))
}

/// `1999, "EUR"` as `19.99 EUR`.
pub fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", c / 100, c % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_has_two_decimals() {
        assert_eq!(money(1999, "EUR"), "19.99 EUR");
        assert_eq!(money(5, "USD"), "0.05 USD");
        assert_eq!(money(-1250, "EUR"), "-12.50 EUR");
    }

    #[test]
    fn every_kind_renders_and_html_is_escaped() {
        let t = Templates::new().expect("templates compile");
        let common = json!({"username": "<b>ann</b>", "shop_url": "http://shop.test"});
        let contexts = [
            (
                Kind::OrderConfirmation,
                json!({"order_number": "2026-11-000001", "product": "Book & Co", "quantity": 1,
                       "unit_price": "19.99 EUR", "total": "19.99 EUR", "ordered_at": "2026-11-21 10:00 UTC",
                       "order_id": 1}),
            ),
            (
                Kind::HoldExpired,
                json!({"order_number": "2026-11-000002", "product": "Book & Co", "quantity": 1,
                       "unit_price": "19.99 EUR", "total": "19.99 EUR", "ordered_at": "2026-11-21 10:00 UTC",
                       "order_id": 1}),
            ),
            (
                Kind::OrderCancelled,
                json!({"order_number": "2026-11-000003", "product": "Book & Co", "quantity": 1,
                       "unit_price": "19.99 EUR", "total": "19.99 EUR", "ordered_at": "2026-11-21 10:00 UTC",
                       "order_id": 1}),
            ),
            (
                Kind::PaymentReceived,
                json!({"order_number": "2026-11-000004", "product": "Book & Co", "quantity": 1,
                       "unit_price": "19.99 EUR", "total": "19.99 EUR", "ordered_at": "2026-11-21 10:00 UTC",
                       "order_id": 4}),
            ),
            (
                Kind::PaymentFailed,
                json!({"order_number": "2026-11-000005", "product": "Book & Co", "quantity": 1,
                       "unit_price": "19.99 EUR", "total": "19.99 EUR", "ordered_at": "2026-11-21 10:00 UTC",
                       "order_id": 5}),
            ),
            (
                Kind::OrderRefunded,
                json!({"order_number": "2026-11-000006", "product": "Book & Co", "quantity": 1,
                       "unit_price": "19.99 EUR", "total": "19.99 EUR", "ordered_at": "2026-11-21 10:00 UTC",
                       "order_id": 6}),
            ),
            (
                Kind::VerifyEmail,
                json!({"link": "http://shop.test/v?token=x", "expires_at": "2026-11-28 10:00 UTC"}),
            ),
            (
                Kind::PasswordReset,
                json!({"link": "http://shop.test/r?token=x", "expires_at": "2026-11-21 11:00 UTC"}),
            ),
            (
                Kind::SellerDailyDigest,
                json!({"period": "2026-11-20", "totals": ["19.99 EUR"],
                       "lines": [{"product": "Book", "orders": 1, "units": 1, "revenue": "19.99 EUR"}]}),
            ),
            (
                Kind::SellerMonthlyReport,
                json!({"period": "2026-10", "totals": [], "lines": []}),
            ),
            (
                Kind::NewProducts,
                json!({"unsubscribe_link": "http://shop.test/u?token=x",
                       "products": [{"name": "Book", "seller": "ann", "price": "9.00 EUR", "description": "d"}]}),
            ),
        ];
        for (kind, extra) in contexts {
            let mut ctx = common.clone();
            ctx.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let r = t
                .render(kind, &ctx)
                .unwrap_or_else(|e| panic!("{kind:?}: {e:#}"));
            assert!(!r.subject.is_empty(), "{kind:?}");
            assert!(
                r.text.contains("<b>ann</b>"),
                "{kind:?}: text is not escaped"
            );
            assert!(r.html.contains("&lt;b&gt;ann&lt;"), "{kind:?}: {}", r.html);
            assert!(!r.html.contains("<b>ann</b>"), "{kind:?}");
        }
    }

    #[test]
    fn a_missing_value_is_an_error_not_a_blank() {
        let t = Templates::new().unwrap();
        assert!(t
            .render(Kind::VerifyEmail, &json!({"username": "ann"}))
            .is_err());
    }
}
