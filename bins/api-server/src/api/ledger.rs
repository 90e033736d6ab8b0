//! `/api/v1/ledger`: wallets, transfers (single, batch, pending post and void), NFTs, rewards
//! and sealed blocks, over the [`Ledger`] trait.
//!
//! Amounts travel as decimal strings of tokens (`"12.5"`), so that no client loses precision
//! to a floating-point number; answers carry the ledger's integer units as well. A transfer's
//! id is its idempotency key: the `Idempotency-Key` header (a UUID, or any text mapped to one)
//! or the body's `id`; a retry with the same key is answered with the stored transfer
//! (`"replayed": true`) and applies nothing again.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use ledger::{
    Asset, BatchMode, Issuance, Ledger, LedgerError, MintNft, MoveNft, NftId, NftTransferId,
    RewardRequest, SystemWallet, TokenAmount, TransferId, TransferRequest, UserId, WalletId,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::admission::Caller;
use crate::api::body::Body;
use crate::error::{ApiError, ApiResult};
use access::WalletOwners;

/// Entries or rows a read returns when the query names no `limit`.
const DEFAULT_PAGE: u32 = 50;

pub fn configure(config: &mut web::ServiceConfig) {
    // One scope per family: the router compares the prefix once instead of matching every
    // route's pattern of every family.
    config.service(
        web::scope("/api/v1/ledger")
            .route("/wallets", web::post().to(open_wallet))
            .route("/wallets/{id}", web::get().to(wallet))
            .route("/wallets/{id}/statement", web::get().to(statement))
            .route("/wallets/{id}/balance", web::get().to(balance_at))
            .route("/transfers", web::post().to(transfer))
            .route("/transfers/batch", web::post().to(batch))
            .route("/transfers/{id}", web::get().to(get_transfer))
            .route("/transfers/{id}/proof", web::get().to(transfer_proof))
            .route("/transfers/{id}/post", web::post().to(post_pending))
            .route("/transfers/{id}/void", web::post().to(void_pending))
            .route("/nfts", web::post().to(mint))
            .route("/nfts", web::get().to(nfts_of))
            .route("/nfts/{id}", web::get().to(nft))
            .route("/nfts/{id}/transfer", web::post().to(move_nft))
            .route("/nfts/{id}/burn", web::post().to(burn_nft))
            .route("/issuance", web::post().to(issue))
            .route("/rewards", web::post().to(pay_reward))
            .route("/rewards", web::get().to(rewards_of))
            .route("/blocks", web::get().to(blocks))
            .route("/blocks/verify", web::get().to(verify_blocks))
            .default_service(web::to(crate::api::not_found)),
    );
}

fn asset(code: Option<&str>) -> Result<Asset, ApiError> {
    match code {
        None => Ok(Asset::fodi()),
        Some(code) => Ok(Asset::new(code)?),
    }
}

/// The transfer id a request names: its `Idempotency-Key` header (scoped to the caller, so
/// two callers' keys never meet), else `body_id`, else none (a new one).
fn transfer_id(
    request: &HttpRequest,
    caller: &Caller,
    body_id: Option<Uuid>,
) -> Result<Option<TransferId>, ApiError> {
    let header = match request.headers().get("Idempotency-Key") {
        None => None,
        Some(value) => {
            let key = value.to_str().map_err(|_| {
                ApiError::invalid_idempotency_key().with_detail("visible ASCII characters only")
            })?;
            let id = TransferId::from_idempotency_key(&caller.name(), key).map_err(|error| {
                ApiError::invalid_idempotency_key().with_detail(error.to_string())
            })?;
            Some(id)
        }
    };
    match (header, body_id) {
        (Some(_), Some(_)) => Err(ApiError::idempotency_key_mismatch()
            .with_detail("send the Idempotency-Key header or the body's id, not both")),
        (Some(header), None) => Ok(Some(header)),
        (None, body) => Ok(body.map(TransferId::chosen).transpose()?),
    }
}

/// 201 for a transfer applied now, 200 for a replay.
fn applied(applied: &ledger::Applied) -> HttpResponse {
    let status = if applied.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    HttpResponse::build(status).json(applied)
}

// --- wallets -------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenWallet {
    user_id: Uuid,
    /// `FODI` when absent.
    #[schema(pattern = r"^[A-Z][A-Z0-9]{1,15}$")]
    asset: Option<String>,
}

/// Open (or get) a user's wallet of an asset
#[utoipa::path(post, path = "/api/v1/ledger/wallets", tag = "ledger", request_body = OpenWallet,
    responses((status = 200, body = WalletView)))]
pub async fn open_wallet(
    caller: Caller,
    ledger: web::Data<dyn Ledger>,
    Body(body): Body<OpenWallet>,
) -> ApiResult {
    caller.may_act_for(UserId(body.user_id))?;
    let asset = asset(body.asset.as_deref())?;
    let wallet = ledger
        .open_user_wallet(UserId(body.user_id), &asset)
        .await?;
    Ok(HttpResponse::Ok().json(wallet_view(wallet)))
}

/// A wallet with what a client needs to decide on a transfer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WalletView {
    #[serde(flatten)]
    wallet: ledger::Wallet,
    /// Posted minus holds (units, as a string).
    #[serde(with = "ledger::amount::units_text")]
    #[schema(value_type = String, pattern = "^-?[0-9]{1,19}$")]
    available: i64,
    /// What a transfer may take now; null when unbounded.
    #[serde(with = "ledger::amount::units_text::option")]
    #[schema(value_type = Option<String>, pattern = "^-?[0-9]{1,19}$")]
    spendable: Option<i64>,
}

fn wallet_view(wallet: ledger::Wallet) -> WalletView {
    WalletView {
        available: wallet.available(),
        spendable: wallet.spendable(),
        wallet,
    }
}

/// A wallet with its balances and limit
#[utoipa::path(get, path = "/api/v1/ledger/wallets/{id}", tag = "ledger", params(("id" = Uuid, Path)),
    responses((status = 200, body = WalletView)))]
pub async fn wallet(_: Caller, ledger: web::Data<dyn Ledger>, id: web::Path<Uuid>) -> ApiResult {
    let wallet = ledger.wallet(WalletId(*id)).await?;
    Ok(HttpResponse::Ok().json(wallet_view(wallet)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    before: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// A page of a wallet's history, newest first, with running balances
#[utoipa::path(get, path = "/api/v1/ledger/wallets/{id}/statement", tag = "ledger", params(("id" = Uuid, Path), StatementQuery),
    responses((status = 200, body = ledger::Statement)))]
pub async fn statement(
    _: Caller,
    ledger: web::Data<dyn Ledger>,
    id: web::Path<Uuid>,
    query: web::Query<StatementQuery>,
) -> ApiResult {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    let statement = ledger.statement(WalletId(*id), query.before, limit).await?;
    Ok(HttpResponse::Ok().json(statement))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BalanceQuery {
    at: Option<DateTime<Utc>>,
}

/// A wallet's posted balance at a time (now by default)
///
/// Exact at any moment. With a read replica configured, a moment older than the replica's
/// bound (`database.replica_max_lag`) is read there; the balance now is the primary's.
#[utoipa::path(get, path = "/api/v1/ledger/wallets/{id}/balance", tag = "ledger", params(("id" = Uuid, Path), BalanceQuery),
    responses((status = 200, body = BalanceAt)))]
pub async fn balance_at(
    _: Caller,
    ledger: web::Data<dyn Ledger>,
    id: web::Path<Uuid>,
    query: web::Query<BalanceQuery>,
) -> ApiResult {
    let at = query.at.unwrap_or_else(Utc::now);
    let posted = ledger.balance_at(WalletId(*id), at).await?;
    Ok(HttpResponse::Ok().json(BalanceAt {
        wallet: *id,
        at,
        posted,
    }))
}

/// A wallet's posted balance at a time.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BalanceAt {
    wallet: Uuid,
    at: DateTime<Utc>,
    /// Units, as a string.
    #[serde(with = "ledger::amount::units_text")]
    #[schema(value_type = String, pattern = "^-?[0-9]{1,19}$")]
    posted: i64,
}

// --- transfers -----------------------------------------------------------------------------

/// A transfer, or a hold when `hold_timeout_ms` is given.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    id: Option<Uuid>,
    debit: Uuid,
    credit: Uuid,
    amount: TokenAmount,
    /// Makes it a hold that lapses after this long (at most 366 days) unless posted or voided.
    #[schema(minimum = 1, maximum = 31_622_400_000_u64)]
    hold_timeout_ms: Option<u64>,
    #[schema(min_length = 1, max_length = 64)]
    reason: Option<String>,
    #[schema(min_length = 1, max_length = 256)]
    reference: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

impl NewTransfer {
    /// The request, recording `caller` as its submitter; `id` from the request's header.
    fn into_request(
        self,
        id: Option<TransferId>,
        caller: &Caller,
    ) -> Result<TransferRequest, ApiError> {
        let amount = self.amount.amount()?;
        let (debit, credit) = (WalletId(self.debit), WalletId(self.credit));
        let mut request = match self.hold_timeout_ms {
            None => TransferRequest::transfer(debit, credit, amount),
            Some(0) => {
                return Err(ApiError::from(LedgerError::InvalidField {
                    field: "hold_timeout_ms",
                    reason: "must be positive".into(),
                }));
            }
            Some(ms) => TransferRequest::hold(debit, credit, amount, Duration::from_millis(ms)),
        };
        if let Some(id) = id.map_or_else(
            || self.id.map(TransferId::chosen).transpose(),
            |id| Ok(Some(id)),
        )? {
            request = request.with_id(id);
        }
        request = request.submitted_by(caller.name());
        if let Some(reason) = self.reason {
            request = request.with_reason(reason);
        }
        if let Some(reference) = self.reference {
            request = request.with_reference(reference);
        }
        if let Some(metadata) = self.metadata {
            request = request.with_metadata(metadata);
        }
        request.validate()?;
        Ok(request)
    }
}

/// Apply a transfer (or a hold), idempotently by its id or Idempotency-Key
#[utoipa::path(post, path = "/api/v1/ledger/transfers", tag = "ledger", request_body = NewTransfer,
    params(("Idempotency-Key" = Option<String>, Header, description = "a UUID, or any text mapped to one")),
    responses((status = 201, description = "applied now", body = ledger::Applied), (status = 200, description = "a replay", body = ledger::Applied),
        (status = 409, body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn transfer(
    caller: Caller,
    request: HttpRequest,
    ledger: web::Data<dyn Ledger>,
    owners: web::Data<WalletOwners>,
    Body(body): Body<NewTransfer>,
) -> ApiResult {
    let id = transfer_id(&request, &caller, body.id)?;
    caller.may_debit(&owners, WalletId(body.debit)).await?;
    let result = ledger.transfer(body.into_request(id, &caller)?).await?;
    Ok(applied(&result))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBatch {
    mode: BatchMode,
    #[schema(min_items = 1, max_items = 10_000)]
    transfers: Vec<NewTransfer>,
}

/// Apply up to 10,000 transfers, linked (all or none) or independent
#[utoipa::path(post, path = "/api/v1/ledger/transfers/batch", tag = "ledger", request_body = NewBatch,
    responses((status = 200, body = BatchOutcome)))]
pub async fn batch(
    caller: Caller,
    ledger: web::Data<dyn Ledger>,
    owners: web::Data<WalletOwners>,
    Body(body): Body<NewBatch>,
) -> ApiResult {
    let debits: std::collections::BTreeSet<Uuid> = body
        .transfers
        .iter()
        .map(|transfer| transfer.debit)
        .collect();
    for debit in debits {
        caller.may_debit(&owners, WalletId(debit)).await?;
    }
    let requests = body
        .transfers
        .into_iter()
        .enumerate()
        .map(|(index, transfer)| {
            transfer.into_request(None, &caller).map_err(|error| {
                let detail = error.problem().detail.clone().unwrap_or_default();
                error.with_detail(format!("transfers[{index}]: {detail}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let results = ledger.submit(requests, body.mode).await?;
    let applied = results.iter().filter(|result| result.is_ok()).count();
    let results = results
        .into_iter()
        .map(|result| match result {
            Ok(applied) => BatchItem {
                ok: Some(applied),
                error: None,
            },
            Err(error) => BatchItem {
                ok: None,
                error: Some(ApiError::from(error).problem().clone()),
            },
        })
        .collect();
    Ok(HttpResponse::Ok().json(BatchOutcome { applied, results }))
}

/// A batch's outcome, item by item in the order submitted.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchOutcome {
    /// Items applied.
    applied: usize,
    results: Vec<BatchItem>,
}

/// One item of a batch: `ok` when it applied, else `error`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<ledger::Applied>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<http_problem::Problem>,
}

/// A transfer
#[utoipa::path(get, path = "/api/v1/ledger/transfers/{id}", tag = "ledger", params(("id" = Uuid, Path)),
    responses((status = 200, body = ledger::Transfer)))]
pub async fn get_transfer(
    _: Caller,
    ledger: web::Data<dyn Ledger>,
    id: web::Path<Uuid>,
) -> ApiResult {
    match ledger.get_transfer(TransferId(*id)).await? {
        Some(transfer) => Ok(HttpResponse::Ok().json(transfer)),
        None => Err(ApiError::transfer_not_found()),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// The posting's own id.
    id: Option<Uuid>,
    /// Post part of the hold; all of it when absent.
    amount: Option<TokenAmount>,
}

/// Voiding a hold releases all of it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Void {
    /// The voiding's own id.
    id: Option<Uuid>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProofQuery {
    /// The height of the block whose hash the verifier pinned: the transfer's own block (when
    /// absent) or a later one, at most 999 after it. An earlier block commits to nothing after
    /// it.
    #[param(minimum = 0)]
    pinned_height: Option<i64>,
}

/// Evidence that a sealed transfer is in the chain, checkable without trusting this server
/// (`ledger::seal::proof::verify`, or `api-server verify-proof`)
#[utoipa::path(get, path = "/api/v1/ledger/transfers/{id}/proof", tag = "ledger", params(("id" = Uuid, Path), ProofQuery),
    responses((status = 200, body = ledger::InclusionProof),
        (status = 409, description = "not sealed yet", body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn transfer_proof(
    _: Caller,
    ledger: web::Data<dyn Ledger>,
    id: web::Path<Uuid>,
    query: web::Query<ProofQuery>,
) -> ApiResult {
    let proof = ledger
        .inclusion_proof(TransferId(*id), query.pinned_height)
        .await?
        .ok_or_else(ApiError::transfer_not_found)?;
    Ok(HttpResponse::Ok().json(proof))
}

/// Post a pending transfer, wholly or partly
#[utoipa::path(post, path = "/api/v1/ledger/transfers/{id}/post", tag = "ledger", request_body = Resolve, params(("id" = Uuid, Path)),
    responses((status = 201, body = ledger::Applied), (status = 200, body = ledger::Applied), (status = 409, body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn post_pending(
    caller: Caller,
    request: HttpRequest,
    ledger: web::Data<dyn Ledger>,
    pending: web::Path<Uuid>,
    Body(body): Body<Resolve>,
) -> ApiResult {
    let amount = body.amount.map(|amount| amount.amount()).transpose()?;
    let mut post = TransferRequest::post(TransferId(*pending), amount).submitted_by(caller.name());
    if let Some(id) = transfer_id(&request, &caller, body.id)? {
        post = post.with_id(id);
    }
    Ok(applied(&ledger.transfer(post).await?))
}

/// Void a pending transfer
#[utoipa::path(post, path = "/api/v1/ledger/transfers/{id}/void", tag = "ledger", request_body = Void, params(("id" = Uuid, Path)),
    responses((status = 201, body = ledger::Applied), (status = 200, body = ledger::Applied), (status = 409, body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn void_pending(
    caller: Caller,
    request: HttpRequest,
    ledger: web::Data<dyn Ledger>,
    pending: web::Path<Uuid>,
    Body(body): Body<Void>,
) -> ApiResult {
    let mut void = TransferRequest::void(TransferId(*pending)).submitted_by(caller.name());
    if let Some(id) = transfer_id(&request, &caller, body.id)? {
        void = void.with_id(id);
    }
    Ok(applied(&ledger.transfer(void).await?))
}

// --- NFTs ----------------------------------------------------------------------------------

/// Mint an NFT
#[utoipa::path(post, path = "/api/v1/ledger/nfts", tag = "ledger", request_body = MintNft,
    responses((status = 201, body = ledger::Nft), (status = 409, body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn mint(_: Caller, ledger: web::Data<dyn Ledger>, Body(nft): Body<MintNft>) -> ApiResult {
    let nft = ledger.mint_nft(nft).await?;
    Ok(HttpResponse::Created().json(nft))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OwnerQuery {
    owner: Uuid,
}

/// A user's NFTs
#[utoipa::path(get, path = "/api/v1/ledger/nfts", tag = "ledger", params(OwnerQuery),
    responses((status = 200, body = Vec<ledger::Nft>)))]
pub async fn nfts_of(
    _: Caller,
    ledger: web::Data<dyn Ledger>,
    query: web::Query<OwnerQuery>,
) -> ApiResult {
    let nfts = ledger.nfts_of(UserId(query.owner)).await?;
    Ok(HttpResponse::Ok().json(nfts))
}

/// An NFT and its history
#[utoipa::path(get, path = "/api/v1/ledger/nfts/{id}", tag = "ledger", params(("id" = Uuid, Path)),
    responses((status = 200, body = NftWithHistory)))]
pub async fn nft(_: Caller, ledger: web::Data<dyn Ledger>, id: web::Path<Uuid>) -> ApiResult {
    let id = NftId(*id);
    let nft = ledger.nft(id).await?;
    let history = ledger.nft_history(id).await?;
    Ok(HttpResponse::Ok().json(NftWithHistory { nft, history }))
}

/// A token and its movements, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NftWithHistory {
    nft: ledger::Nft,
    history: Vec<ledger::NftMovement>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NftMove {
    id: Option<Uuid>,
    from: Uuid,
    to: Uuid,
}

/// Transfer an NFT to another user
#[utoipa::path(post, path = "/api/v1/ledger/nfts/{id}/transfer", tag = "ledger", request_body = NftMove, params(("id" = Uuid, Path)),
    responses((status = 200, body = ledger::Nft), (status = 409, body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn move_nft(
    caller: Caller,
    ledger: web::Data<dyn Ledger>,
    nft: web::Path<Uuid>,
    Body(body): Body<NftMove>,
) -> ApiResult {
    caller.may_act_for(UserId(body.from))?;
    nft_movement(ledger.get_ref(), *nft, body.id, body.from, Some(body.to)).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NftBurn {
    id: Option<Uuid>,
    from: Uuid,
}

/// Burn an NFT
#[utoipa::path(post, path = "/api/v1/ledger/nfts/{id}/burn", tag = "ledger", request_body = NftBurn, params(("id" = Uuid, Path)),
    responses((status = 200, body = ledger::Nft), (status = 409, body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn burn_nft(
    caller: Caller,
    ledger: web::Data<dyn Ledger>,
    nft: web::Path<Uuid>,
    Body(body): Body<NftBurn>,
) -> ApiResult {
    caller.may_act_for(UserId(body.from))?;
    nft_movement(ledger.get_ref(), *nft, body.id, body.from, None).await
}

pub async fn nft_movement(
    ledger: &dyn Ledger,
    nft: Uuid,
    id: Option<Uuid>,
    from: Uuid,
    to: Option<Uuid>,
) -> ApiResult {
    let moved = ledger
        .move_nft(MoveNft {
            id: id.map_or_else(NftTransferId::new, NftTransferId),
            nft: NftId(nft),
            from: UserId(from),
            to: to.map(UserId),
        })
        .await?;
    Ok(HttpResponse::Ok().json(moved))
}

// --- issuance ------------------------------------------------------------------------------

/// Money to create: the asset's issuer pays `to`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIssuance {
    id: Option<Uuid>,
    /// A wallet id, or `rewards_pool` / `fees` for that system wallet of `asset`.
    to: String,
    amount: TokenAmount,
    /// `FODI` when absent; only with a system wallet's name in `to`.
    #[schema(pattern = r"^[A-Z][A-Z0-9]{1,15}$")]
    asset: Option<String>,
    /// What it is for (a treasury decision, ...).
    #[schema(min_length = 1, max_length = 256)]
    reference: Option<String>,
}

/// Issue money to a wallet (the treasury's operation, the only one that creates money)
#[utoipa::path(post, path = "/api/v1/ledger/issuance", tag = "ledger", request_body = NewIssuance,
    params(("Idempotency-Key" = Option<String>, Header, description = "any text naming this issuance for the caller")),
    responses((status = 201, description = "issued now", body = ledger::Applied), (status = 200, description = "a replay", body = ledger::Applied),
        (status = 409, body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn issue(
    caller: Caller,
    request: HttpRequest,
    ledger: web::Data<dyn Ledger>,
    Body(body): Body<NewIssuance>,
) -> ApiResult {
    // The issuer pays an issuance: it cannot be its recipient.
    let to = match (body.to.parse::<Uuid>(), body.to.parse::<SystemWallet>()) {
        (Ok(wallet), _) if body.asset.is_none() => WalletId(wallet),
        (_, Ok(kind)) if kind != SystemWallet::Issuer => {
            let asset = asset(body.asset.as_deref())?;
            ledger.system_wallet(kind, &asset).await?.id
        }
        _ => {
            return Err(ApiError::from(LedgerError::InvalidField {
                field: "to",
                reason: "a wallet id (without asset), rewards_pool or fees".into(),
            }));
        }
    };
    let mut issuance = Issuance::new(to, body.amount.amount()?).submitted_by(caller.name());
    if let Some(id) = transfer_id(&request, &caller, body.id)? {
        issuance = issuance.with_id(id);
    }
    if let Some(reference) = body.reference {
        issuance = issuance.with_reference(reference);
    }
    Ok(applied(&ledger.issue(issuance).await?))
}

// --- rewards -------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReward {
    user_id: Uuid,
    #[schema(min_length = 1, max_length = 64)]
    reason: String,
    #[schema(min_length = 1, max_length = 256)]
    reference: String,
    amount: TokenAmount,
    /// `FODI` when absent.
    #[schema(pattern = r"^[A-Z][A-Z0-9]{1,15}$")]
    asset: Option<String>,
    order_id: Option<Uuid>,
}

/// Pay a reward from the rewards pool, once per (user, reason, reference)
#[utoipa::path(post, path = "/api/v1/ledger/rewards", tag = "ledger", request_body = NewReward,
    responses((status = 200, body = ledger::Reward), (status = 409, body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn pay_reward(
    caller: Caller,
    ledger: web::Data<dyn Ledger>,
    Body(body): Body<NewReward>,
) -> ApiResult {
    let reward = ledger
        .pay_reward(RewardRequest {
            user: UserId(body.user_id),
            reason: body.reason,
            reference: body.reference,
            amount: body.amount.amount()?,
            asset: asset(body.asset.as_deref())?,
            order_id: body.order_id,
            submitted_by: Some(caller.name()),
        })
        .await?;
    Ok(HttpResponse::Ok().json(reward))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RewardsQuery {
    user: Uuid,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// A user's rewards
#[utoipa::path(get, path = "/api/v1/ledger/rewards", tag = "ledger", params(RewardsQuery),
    responses((status = 200, body = Vec<ledger::Reward>)))]
pub async fn rewards_of(
    _: Caller,
    ledger: web::Data<dyn Ledger>,
    query: web::Query<RewardsQuery>,
) -> ApiResult {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    let rewards = ledger.rewards_of(UserId(query.user), limit).await?;
    Ok(HttpResponse::Ok().json(rewards))
}

// --- blocks --------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BlocksQuery {
    #[param(minimum = 0)]
    from: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Sealed blocks from a height
#[utoipa::path(get, path = "/api/v1/ledger/blocks", tag = "ledger", params(BlocksQuery),
    responses((status = 200, body = Vec<ledger::Block>)))]
pub async fn blocks(
    _: Caller,
    ledger: web::Data<dyn Ledger>,
    query: web::Query<BlocksQuery>,
) -> ApiResult {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    let blocks = ledger.blocks(query.from.unwrap_or(0), limit).await?;
    Ok(HttpResponse::Ok().json(blocks))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// The first height to recompute (0 when absent); the block before it is taken as stored.
    #[param(minimum = 0)]
    from: Option<i64>,
    /// The last height to recompute (the newest when absent).
    #[param(minimum = 0)]
    to: Option<i64>,
}

/// Recompute the chain of blocks, or a range of it (admin: it reads every transfer covered)
#[utoipa::path(get, path = "/api/v1/ledger/blocks/verify", tag = "ledger", params(VerifyQuery),
    responses((status = 200, body = VerifiedChain)))]
pub async fn verify_blocks(
    _: Caller,
    ledger: web::Data<dyn Ledger>,
    query: web::Query<VerifyQuery>,
) -> ApiResult {
    let verification = ledger
        .verify_blocks(query.from.unwrap_or(0), query.to)
        .await?;
    Ok(HttpResponse::Ok().json(VerifiedChain {
        valid: verification.is_valid(),
        verification,
    }))
}

/// The chain's verification.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ChainVerification)]
pub struct VerifiedChain {
    valid: bool,
    verification: ledger::ChainVerification,
}
