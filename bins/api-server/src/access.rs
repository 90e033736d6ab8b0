//! Who may do what: admin tokens may do everything, API tokens may write and read, and reads
//! need a token only when `auth.read_requires_token`. Without any token configured (a
//! loopback-only development server; `Settings::check` refuses anything else) everything is
//! open. Tokens are compared in constant time and never logged.

use actix_web::HttpRequest;
use admin_api::auth::{bearer, token_matches};

use crate::error::ApiError;
use crate::settings::AuthSettings;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Read,
    Write,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Api,
    Admin,
}

/// The configured tokens.
#[derive(Clone)]
pub struct Access {
    admin: Vec<String>,
    api: Vec<String>,
    read_requires_token: bool,
}

impl Access {
    pub fn new(settings: &AuthSettings) -> Self {
        Self {
            admin: settings.admin_tokens.clone(),
            api: settings.api_tokens.clone(),
            read_requires_token: settings.read_requires_token,
        }
    }

    fn open(&self) -> bool {
        self.admin.is_empty() && self.api.is_empty()
    }

    /// The caller's role by its bearer token: `Ok(None)` without one, an error for one that
    /// matches nothing.
    fn role(&self, request: &HttpRequest) -> Result<Option<Role>, ApiError> {
        let Some(offered) = bearer(request) else {
            return Ok(None);
        };
        // Every token is compared, so the time taken does not tell which list matched.
        let admin = self
            .admin
            .iter()
            .fold(false, |found, token| token_matches(offered, token) | found);
        let api = self
            .api
            .iter()
            .fold(false, |found, token| token_matches(offered, token) | found);
        match (admin, api) {
            (true, _) => Ok(Some(Role::Admin)),
            (false, true) => Ok(Some(Role::Api)),
            (false, false) => Err(ApiError::invalid_token()),
        }
    }

    /// `Ok` when the request may do what `needs` says; else the 401 or 403 to answer.
    pub fn check(&self, request: &HttpRequest, needs: Needs) -> Result<(), ApiError> {
        if self.open() {
            return Ok(());
        }
        let role = self.role(request)?;
        match (needs, role) {
            (Needs::Read, _) if !self.read_requires_token => Ok(()),
            (_, Some(Role::Admin)) | (Needs::Read | Needs::Write, Some(Role::Api)) => Ok(()),
            (Needs::Admin, Some(Role::Api)) => Err(ApiError::forbidden()),
            (_, None) => Err(ApiError::missing_token()),
        }
    }
}

/// Extractors that admit a request by its token: a handler taking `CanWrite` runs only for
/// callers allowed to write.
macro_rules! access_extractor {
    ($name:ident, $needs:expr) => {
        pub struct $name;

        impl actix_web::FromRequest for $name {
            type Error = ApiError;
            type Future = std::future::Ready<Result<Self, ApiError>>;

            fn from_request(
                request: &HttpRequest,
                _: &mut actix_web::dev::Payload,
            ) -> Self::Future {
                let admitted = match request.app_data::<actix_web::web::Data<Access>>() {
                    Some(access) => access.check(request, $needs).map(|()| $name),
                    None => Err(ApiError::internal(&"no access rules configured")),
                };
                std::future::ready(admitted)
            }
        }
    };
}

access_extractor!(CanRead, Needs::Read);
access_extractor!(CanWrite, Needs::Write);
access_extractor!(CanAdmin, Needs::Admin);
