//! Scheduled email jobs, in UTC.
//!
//! | job | when | covers |
//! |---|---|---|
//! | `seller_daily_digest` | daily at `JOB_DIGEST_AT` | the previous day's orders, per seller (none: no email) |
//! | `seller_monthly_report` | the 1st at `JOB_REPORT_AT` | the previous month's revenue, per seller with products |
//! | `new_products` | daily at `JOB_ANNOUNCE_AT` | products added in the last 24 hours (none: no email) |
//!
//! A run is keyed by (job, period). Its `job_run` row and its emails commit
//! together, and the key refuses a second run, so a period runs at most once
//! across instances and restarts; concurrent tries wait on the key and find
//! it taken. Each scheduler tick runs the latest due period if it has not
//! run yet, so a run missed while every server was down happens on the next
//! start; periods that ended before the database was set up are skipped.

use std::time::Duration;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Serialize;

use crate::config::JobTimes;
use crate::db::Db;

/// How often the scheduler looks for due runs.
const TICK: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    SellerDailyDigest,
    SellerMonthlyReport,
    NewProducts,
}

/// The key and time window of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    pub key: String,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Period {
    /// The whole window lies before `t`.
    pub fn ended_before(&self, t: DateTime<Utc>) -> bool {
        self.until <= t
    }
}

/// What asking for a run did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RunOutcome {
    pub job: &'static str,
    pub period: String,
    /// False: this period had already run (nothing was queued now).
    pub ran: bool,
    /// Emails the run queued.
    pub emails: i32,
    pub ran_at: DateTime<Utc>,
}

impl Job {
    pub const ALL: [Job; 3] = [
        Job::SellerDailyDigest,
        Job::SellerMonthlyReport,
        Job::NewProducts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::SellerDailyDigest => "seller_daily_digest",
            Job::SellerMonthlyReport => "seller_monthly_report",
            Job::NewProducts => "new_products",
        }
    }

    pub fn parse(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == name)
    }

    fn time(self, times: &JobTimes) -> NaiveTime {
        match self {
            Job::SellerDailyDigest => times.digest_at,
            Job::SellerMonthlyReport => times.report_at,
            Job::NewProducts => times.announce_at,
        }
    }

    /// When it runs, in words.
    pub fn schedule(self, times: &JobTimes) -> String {
        let at = self.time(times).format("%H:%M");
        match self {
            Job::SellerMonthlyReport => format!("monthly on the 1st at {at} UTC"),
            _ => format!("daily at {at} UTC"),
        }
    }

    /// The latest scheduled moment at or before `now`.
    pub fn due(self, times: &JobTimes, now: DateTime<Utc>) -> DateTime<Utc> {
        let t = self.time(times);
        let today = now.date_naive();
        match self {
            Job::SellerMonthlyReport => {
                let first = today.with_day(1).unwrap_or(today);
                let at = first.and_time(t).and_utc();
                if at <= now {
                    at
                } else {
                    (first - Months::new(1)).and_time(t).and_utc()
                }
            }
            _ => {
                let at = today.and_time(t).and_utc();
                if at <= now {
                    at
                } else {
                    at - Days::new(1)
                }
            }
        }
    }

    /// The period a run at `at` covers: the day before it, the month before
    /// it, or the 24 hours up to it.
    pub fn period(self, at: DateTime<Utc>) -> Period {
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN).and_utc();
        let day = at.date_naive();
        match self {
            Job::SellerDailyDigest => {
                let before = day - Days::new(1);
                Period {
                    key: before.format("%Y-%m-%d").to_string(),
                    from: midnight(before),
                    until: midnight(day),
                }
            }
            Job::SellerMonthlyReport => {
                let this = day.with_day(1).unwrap_or(day);
                let prev = this - Months::new(1);
                Period {
                    key: prev.format("%Y-%m").to_string(),
                    from: midnight(prev),
                    until: midnight(this),
                }
            }
            Job::NewProducts => Period {
                key: day.format("%Y-%m-%d").to_string(),
                from: at - TimeDelta::hours(24),
                until: at,
            },
        }
    }
}

/// Runs `job` for the period of a run at `at`, unless that period already
/// ran. The run's row and its emails commit together.
pub async fn run(
    pool: &Db,
    job: Job,
    at: DateTime<Utc>,
    trigger: &str,
) -> sqlx::Result<RunOutcome> {
    let period = job.period(at);
    let mut tx = pool.begin().await?;
    // Waits here while another instance runs the same period, then finds
    // its row.
    let claimed: Option<DateTime<Utc>> = sqlx::query_scalar(
        "insert into job_run (job, period, trigger, cutoff, emails) values ($1, $2, $3, $4, 0)
         on conflict (job, period) do nothing
         returning ran_at",
    )
    .bind(job.name())
    .bind(&period.key)
    .bind(trigger)
    .bind(period.until)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(ran_at) = claimed else {
        drop(tx);
        let (emails, ran_at): (i32, DateTime<Utc>) =
            sqlx::query_as("select emails, ran_at from job_run where job = $1 and period = $2")
                .bind(job.name())
                .bind(&period.key)
                .fetch_one(pool)
                .await?;
        return Ok(RunOutcome {
            job: job.name(),
            period: period.key,
            ran: false,
            emails,
            ran_at,
        });
    };
    let sql = match job {
        Job::SellerDailyDigest => DIGEST_SQL,
        Job::SellerMonthlyReport => REPORT_SQL,
        Job::NewProducts => ANNOUNCE_SQL,
    };
    let queued = sqlx::query(sql)
        .bind(&period.key)
        .bind(period.from)
        .bind(period.until)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let emails = i32::try_from(queued).unwrap_or(i32::MAX);
    sqlx::query("update job_run set emails = $3 where job = $1 and period = $2")
        .bind(job.name())
        .bind(&period.key)
        .bind(emails)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(job = job.name(), period = %period.key, emails, trigger, "job ran");
    Ok(RunOutcome {
        job: job.name(),
        period: period.key,
        ran: true,
        emails,
        ran_at,
    })
}

/// One row per product of an active seller, with its earning orders (paid
/// or confirmed) in the window (`$2`, `$3`), sale orders and catalog lines
/// alike (`order_item`), visited one by one through the "orders of a
/// product by day" and "lines of a product" indexes.
macro_rules! product_lines {
    ($select:literal, $where:literal) => {
        concat!(
            $select,
            "
  from product p
  join app_user s on s.id = p.seller_id and s.disabled_at is null
  cross join lateral (
      select count(*) as orders, coalesce(sum(o.quantity), 0) as units,
             coalesce(sum(o.total_cents), 0) as revenue
        from order_item o
       where o.product_id = p.id and o.created_at >= $2 and o.created_at < $3
         and o.status in ('paid', 'confirmed')) l
",
            $where,
            "
 group by p.seller_id"
        )
    };
}

/// Per seller with orders in the window: one line per product that sold.
const DIGEST_SQL: &str = product_lines!(
    "
insert into outbox (kind, user_id, payload)
select 'seller_daily_digest', p.seller_id,
       jsonb_build_object('period', $1::text, 'lines',
           jsonb_agg(jsonb_build_object('product', p.name, 'currency', p.currency,
                                        'orders', l.orders, 'units', l.units,
                                        'revenue_cents', l.revenue)
                     order by l.revenue desc, p.id))",
    " where l.orders > 0"
);

/// Per seller with products: the month's lines (possibly none).
const REPORT_SQL: &str = product_lines!(
    "
insert into outbox (kind, user_id, payload)
select 'seller_monthly_report', p.seller_id,
       jsonb_build_object('period', $1::text, 'lines',
           coalesce(jsonb_agg(jsonb_build_object('product', p.name, 'currency', p.currency,
                                                 'orders', l.orders, 'units', l.units,
                                                 'revenue_cents', l.revenue)
                              order by l.revenue desc, p.id) filter (where l.orders > 0),
                    '[]'::jsonb))",
    ""
);

/// To every customer with a verified address who has not opted out: the
/// products added in the window, starting no earlier than where the previous
/// announcement stopped (so an early run by hand does not repeat products).
const ANNOUNCE_SQL: &str = "
with fresh as (
    select coalesce(jsonb_agg(jsonb_build_object('name', p.name, 'description', p.description,
                                                 'price_cents', p.price_cents, 'currency', p.currency,
                                                 'seller', s.username)
                              order by p.created_at, p.id), '[]'::jsonb) as products,
           count(*) as n
      from product p join app_user s on s.id = p.seller_id
     where p.created_at >= greatest($2, (select max(cutoff) from job_run
                                          where job = 'new_products' and period <> $1))
       and p.created_at < $3)
insert into outbox (kind, user_id, payload)
select 'new_products', u.id, jsonb_build_object('period', $1::text, 'products', fresh.products)
  from fresh, app_user u
 where fresh.n > 0
   and u.role = 'customer' and u.announcements
   and u.disabled_at is null and u.email_verified_at is not null
 order by u.id";

/// The scheduler: runs every job's latest due period that has not run, now
/// and on every tick, until aborted.
pub async fn schedule(pool: Db, times: JobTimes) {
    loop {
        if let Err(e) = tick(&pool, &times).await {
            tracing::warn!(error = %e, "scheduled jobs could not run; trying again");
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn tick(pool: &Db, times: &JobTimes) -> sqlx::Result<()> {
    // The database's clock, like every other time rule, and when the shop's
    // database was set up: a period that ended before then had nothing to
    // report, so a new shop does not start with a catch-up of empty reports.
    let (now, installed): (DateTime<Utc>, Option<DateTime<Utc>>) =
        sqlx::query_as("select now(), (select min(installed_on) from _sqlx_migrations)")
            .fetch_one(pool)
            .await?;
    for job in Job::ALL {
        let at = job.due(times, now);
        let period = job.period(at);
        if installed.is_some_and(|i| period.ended_before(i)) {
            continue;
        }
        let key = period.key;
        let done: bool = sqlx::query_scalar(
            "select exists (select 1 from job_run where job = $1 and period = $2)",
        )
        .bind(job.name())
        .bind(&key)
        .fetch_one(pool)
        .await?;
        if !done {
            run(pool, job, at, "schedule").await?;
        }
    }
    Ok(())
}

/// A job's recent runs, for admins.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct JobRun {
    pub period: String,
    pub trigger: String,
    pub emails: i32,
    pub ran_at: DateTime<Utc>,
}

pub async fn recent_runs(pool: &Db, job: Job, limit: i64) -> sqlx::Result<Vec<JobRun>> {
    sqlx::query_as(
        "select period, trigger, emails, ran_at from job_run
          where job = $1 order by ran_at desc limit $2",
    )
    .bind(job.name())
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn daily_jobs_are_due_today_after_their_time_and_yesterday_before() {
        let times = JobTimes::default(); // digest 06:00
        let j = Job::SellerDailyDigest;
        assert_eq!(
            j.due(&times, utc(2026, 11, 21, 6, 0)),
            utc(2026, 11, 21, 6, 0)
        );
        assert_eq!(
            j.due(&times, utc(2026, 11, 21, 5, 59)),
            utc(2026, 11, 20, 6, 0)
        );
        let p = j.period(utc(2026, 11, 21, 6, 0));
        assert_eq!(p.key, "2026-11-20");
        assert_eq!(
            (p.from, p.until),
            (utc(2026, 11, 20, 0, 0), utc(2026, 11, 21, 0, 0))
        );
    }

    #[test]
    fn the_monthly_report_covers_the_previous_month() {
        let times = JobTimes::default(); // report 07:00 on the 1st
        let j = Job::SellerMonthlyReport;
        assert_eq!(
            j.due(&times, utc(2026, 11, 21, 0, 0)),
            utc(2026, 11, 1, 7, 0)
        );
        assert_eq!(
            j.due(&times, utc(2026, 11, 1, 6, 0)),
            utc(2026, 10, 1, 7, 0)
        );
        assert_eq!(j.due(&times, utc(2026, 1, 1, 6, 0)), utc(2025, 12, 1, 7, 0));
        let p = j.period(utc(2026, 1, 1, 7, 0));
        assert_eq!(p.key, "2025-12");
        assert_eq!(
            (p.from, p.until),
            (utc(2025, 12, 1, 0, 0), utc(2026, 1, 1, 0, 0))
        );
    }

    #[test]
    fn the_announcement_covers_the_last_24_hours() {
        let p = Job::NewProducts.period(utc(2026, 3, 1, 9, 0));
        assert_eq!(p.key, "2026-03-01");
        assert_eq!(
            (p.from, p.until),
            (utc(2026, 2, 28, 9, 0), utc(2026, 3, 1, 9, 0))
        );
    }

    #[test]
    fn a_new_shop_skips_periods_that_ended_before_it_was_set_up() {
        let installed = utc(2026, 11, 21, 1, 30);
        let digest = Job::SellerDailyDigest.period(utc(2026, 11, 21, 6, 0));
        assert!(digest.ended_before(installed), "yesterday had no shop");
        let next = Job::SellerDailyDigest.period(utc(2026, 11, 22, 6, 0));
        assert!(
            !next.ended_before(installed),
            "the first day of the shop is reported"
        );
        let report = Job::SellerMonthlyReport.period(utc(2026, 11, 1, 7, 0));
        assert!(report.ended_before(installed));
    }

    #[test]
    fn job_names_round_trip() {
        for j in Job::ALL {
            assert_eq!(Job::parse(j.name()), Some(j));
        }
        assert_eq!(Job::parse("nope"), None);
    }
}
