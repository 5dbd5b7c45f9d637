//! Accounts and tokens: JWT access tokens, rotating refresh tokens, bcrypt
//! passwords, and the extractor that turns a bearer token into a user.

pub mod account;
pub mod cache;
pub mod context;
pub mod extractor;
pub mod family;
pub mod jwt;
pub mod password;
pub mod service;
pub mod users;

pub use context::AuthContext;
pub use extractor::{AuthUser, Shopper};
pub use jwt::{Claims, JwtKeys};

use serde::{Deserialize, Serialize};

/// What an account may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Seller,
    Admin,
}

impl Role {
    /// The name stored in the database and sent in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Seller => "seller",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "customer" => Some(Role::Customer),
            "seller" => Some(Role::Seller),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}
