//! The engine's handle on a PostgreSQL pool, safe behind a pooler.
//!
//! A pooler in transaction mode (PgBouncer's `pool_mode = transaction`) lends
//! a server connection to a client only for one transaction: between two
//! statements outside a transaction it may hand the server to someone else.
//! sqlx sends a statement's Parse and its Bind in two round trips, each
//! ending in Sync, so outside a transaction the two may reach two different
//! servers, and a named prepared statement lives on one server only. Behind
//! such a pooler, therefore (`DATABASE_POOLER=transaction`):
//!   - statements are not cached (see [`Db::connect_options_for`]);
//!   - every statement run on the pool itself (`query.fetch_one(&db)`) runs
//!     in a transaction of its own, opened and committed around it here;
//!   - what runs on a transaction from [`Db::begin`] is inside one already;
//!   - every transaction starts by dropping the server's prepared statements
//!     (`DEALLOCATE ALL`, in the round trip of its `BEGIN`): sqlx still names
//!     the statements it does not cache, counting per client connection, so
//!     a name another client left on the same server would collide.
//!
//! Nothing else in the engine keeps session state on a pooled connection:
//! leases are rows, not advisory locks; `LISTEN` and the migrations (whose
//! lock is a session advisory lock) use a direct connection
//! (`DATABASE_LISTEN_URL`); no statement `SET`s a session variable.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult, PgRow, PgStatement};
use sqlx::{Describe, Either, Execute, Executor, PgPool, Postgres, Transaction};

use super::failover::Follower;

/// A pool, and whether a transaction-mode pooler stands in front of its
/// server. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    pooled: bool,
    /// What re-points the pool after a failover, when its URL names hosts
    /// to follow (see [`super::failover`]).
    follower: Option<Arc<Follower>>,
}

impl Db {
    /// A pool straight to PostgreSQL: statements run as they are.
    pub fn direct(pool: PgPool) -> Db {
        Db {
            pool,
            pooled: false,
            follower: None,
        }
    }

    /// A pool to a transaction-mode pooler when `pooled` (see the module
    /// docs), else straight to PostgreSQL.
    pub fn new(pool: PgPool, pooled: bool) -> Db {
        Db {
            pool,
            pooled,
            follower: None,
        }
    }

    /// This pool, re-pointed by `follower` from now on. Its options must
    /// carry [`Db::drop_stale`]'s hook, and be the follower's current host's
    /// as [`Db::shape`] makes them.
    pub fn following(mut self, follower: Arc<Follower>) -> Db {
        let pooled = self.pooled;
        follower.adopt(&self.pool, move |o| Db::shape(o, pooled));
        self.follower = Some(follower);
        self
    }

    /// The follower that re-points this pool, if any.
    pub fn follower(&self) -> Option<&Arc<Follower>> {
        self.follower.as_ref()
    }

    /// `options` with a hook that drops, when acquired, every connection
    /// opened before `follower` last re-pointed the pool: after a failover
    /// none reaches the old primary.
    pub fn drop_stale(options: PgPoolOptions, follower: Option<&Arc<Follower>>) -> PgPoolOptions {
        let Some(follower) = follower else {
            return options;
        };
        let epoch = follower.epoch();
        options.before_acquire(move |_conn, meta| {
            let fresh = !epoch.is_stale(&meta);
            Box::pin(async move { Ok(fresh) })
        })
    }

    /// The pool itself. Statements run on it are not wrapped in
    /// transactions: for what goes straight to PostgreSQL (tests, the
    /// harness).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether a transaction-mode pooler is in front.
    pub fn is_pooled(&self) -> bool {
        self.pooled
    }

    /// `options` as a pool to this kind of server needs them: behind a pooler
    /// no statement is cached, and the startup packet carries only what
    /// PgBouncer accepts (not `extra_float_digits`, whose default since
    /// PostgreSQL 12 already prints floats exactly).
    pub fn connect_options_for(options: PgConnectOptions, pooled: bool) -> PgConnectOptions {
        if pooled {
            options.statement_cache_capacity(0).extra_float_digits(None)
        } else {
            options
        }
    }

    /// The options of the engine's pools to the server `options` reaches.
    pub fn shape(options: PgConnectOptions, pooled: bool) -> PgConnectOptions {
        Db::connect_options_for(options, pooled).application_name("flashsale")
    }

    /// A second pool to the same server with the same options and mode, of
    /// at most `max` connections, opened lazily.
    pub fn sibling(&self, max: u32) -> Db {
        // Like the first pool, a connection is not pinged before each use (a
        // round trip per batch); one that died fails its statement instead.
        let options = PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(self.pool.options().get_acquire_timeout())
            .test_before_acquire(false);
        let pool = Db::drop_stale(options, self.follower.as_ref())
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let db = Db::new(pool, self.pooled);
        match &self.follower {
            Some(f) => db.following(Arc::clone(f)),
            None => db,
        }
    }

    /// Starts a transaction: everything run on it reaches one server
    /// connection, through a pooler too.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        begin(&self.pool, self.pooled).await
    }

    /// Connections open, and idle among them (for `/metrics`).
    pub fn size(&self) -> u32 {
        self.pool.size()
    }

    pub fn num_idle(&self) -> usize {
        self.pool.num_idle()
    }

    /// Closes every connection; later use fails.
    pub async fn close(&self) {
        self.pool.close().await
    }
}

async fn begin(pool: &PgPool, pooled: bool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    if pooled {
        pool.begin_with("BEGIN; DEALLOCATE ALL").await
    } else {
        pool.begin().await
    }
}

impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Db {
        Db::direct(pool)
    }
}

impl<'p> Executor<'p> for &'_ Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pooled {
            return (&self.pool).fetch_many(query);
        }
        let pool = self.pool.clone();
        // The whole answer is read inside the transaction, then handed on.
        futures_util::stream::once(async move {
            let mut tx = begin(&pool, true).await?;
            let all: Vec<_> = (&mut *tx).fetch_many(query).try_collect().await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(futures_util::stream::iter(all.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pooled {
            return (&self.pool).fetch_optional(query);
        }
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut tx = begin(&pool, true).await?;
            let row = (&mut *tx).fetch_optional(query).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [sqlx::postgres::PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>> {
        (&self.pool).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>> {
        (&self.pool).describe(sql)
    }
}
