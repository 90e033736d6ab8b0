//! The access policy (the `access` crate) on actix-web's requests. [`Caller`], the extractor
//! every guarded handler takes, admits the request by its route's rule and the caller's rate
//! limit, and for an end user checks that what the path names in the ledger is theirs;
//! handlers whose body names the resource check it with `may_act_for` and `may_debit`.
//! Refusals become problem documents in [`crate::error`].

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use access::{Access, Identity, Owner, Users, WalletOwners};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use ledger::Ledger;

use crate::error::ApiError;

/// What the policy reads of an actix-web request.
pub struct Http<'a>(pub &'a HttpRequest);

impl access::Request for Http<'_> {
    fn method(&self) -> &str {
        self.0.method().as_str()
    }

    fn route(&self) -> Option<String> {
        // Routed: actix finds the pattern by the resource's index, without matching again.
        self.0.match_pattern()
    }

    fn bearer(&self) -> Option<&str> {
        admin_api::auth::bearer(self.0)
    }

    fn path_parameter(&self, name: &str) -> Option<&str> {
        self.0.match_info().get(name)
    }

    fn query(&self) -> &str {
        self.0.query_string()
    }

    fn peer(&self) -> Option<IpAddr> {
        self.0.peer_addr().map(|peer| peer.ip())
    }

    fn forwarded_for(&self) -> Vec<&[u8]> {
        let values = self.0.headers().get_all("x-forwarded-for");
        values.map(|value| value.as_bytes()).collect()
    }
}

/// The admitted caller of a request (see the module documentation).
#[derive(Debug, Clone)]
pub struct Caller(pub access::Caller);

impl std::ops::Deref for Caller {
    type Target = access::Caller;

    fn deref(&self) -> &access::Caller {
        &self.0
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let access = request
                .app_data::<web::Data<Access>>()
                .ok_or_else(|| ApiError::internal(&"no access rules configured"))?;
            let (caller, rule) = access.admit(&Http(&request))?;
            // Only an end user's ownership of what the path names needs the ledger.
            if let (
                Identity::User(_),
                Users::Own(owner @ (Owner::PathWallet | Owner::PathNft | Owner::PathTransfer)),
            ) = (&caller.identity, rule.users)
            {
                let ledger = request
                    .app_data::<web::Data<dyn Ledger>>()
                    .ok_or_else(|| ApiError::internal(&"no ledger"))?;
                let owners = request
                    .app_data::<web::Data<WalletOwners>>()
                    .ok_or_else(|| ApiError::internal(&"no wallet owners"))?;
                caller
                    .owns(owner, &Http(&request), ledger.as_ref(), owners)
                    .await?;
            }
            Ok(Caller(caller))
        })
    }
}
