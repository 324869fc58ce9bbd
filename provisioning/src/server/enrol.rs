//! `POST /v1/enrol`: a renewal CSR, turned into a certificate by the
//! server's [`Enroller`](crate::enrol::Enroller) (the certification body over
//! EST, or a test CA).
//!
//! A renewal keeps exactly the device identity of the certificate that
//! authenticated the request: the institution code *and* the unit (OU), as
//! [`identity_from_certificate`] reads them, so what `/v1/ping` answers with
//! the new certificate is what it answered with the old one. A CSR for any
//! other identity (a sibling unit of the same institution, another
//! institution) is refused with 403, nothing is handed out, and an
//! `enrol-refused` alert is raised for the requesting device: a genuine
//! router never asks for that, so it is an impersonation attempt or a
//! misconfigured device, and an operator must look. Whatever the backend,
//! the issued certificate is checked, not only the CSR.

use cpe_protocol::{decode, EnrolRequest, EnrolResponse};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::alerting::carry_out;
use super::routes::{body, decode_error, read_body, text, Reply};
use super::tls::{identity_from_certificate, DeviceIdentity};
use super::{now_ms, State};
use crate::alerts::Happened;
use crate::enrol::{EnrolError, EnrolmentRequest};

pub(super) async fn enrol(
    state: &State,
    identity: &DeviceIdentity,
    req: Request<Incoming>,
) -> Result<Reply, Reply> {
    let request: EnrolRequest = decode(&read_body(req).await?).map_err(|e| decode_error(&e))?;
    let Some(enroller) = &state.config.enroller else {
        return Err(text(
            StatusCode::NOT_IMPLEMENTED,
            "this server does not handle renewals (started without --enrol-est or --enrol-test-ca)",
        ));
    };
    let code = identity
        .institution_code
        .parse()
        .map_err(|_| text(StatusCode::FORBIDDEN, "client certificate has no institution code"))?;
    let enrolment =
        EnrolmentRequest { csr_pem: &request.csr_pem, institution_code: &code, device: &identity.id };
    let issued = match enroller.enrol(&enrolment).await {
        Ok(issued) => issued,
        Err(EnrolError::OtherInstitution(found)) => {
            return Err(refuse_other_identity(state, identity, &format!("institution {found}")).await);
        }
        Err(e) => {
            tracing::warn!(device = %identity.id, error = %e, "renewal not issued");
            let status = match e {
                EnrolError::Refused(_) | EnrolError::OtherInstitution(_) => StatusCode::UNPROCESSABLE_ENTITY,
                EnrolError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                EnrolError::BadAnswer(_) => StatusCode::BAD_GATEWAY,
            };
            return Err(text(status, e.to_string()));
        }
    };
    // The issued certificate is checked, not the CSR: its identity is read
    // exactly as every later request will read it.
    let issued_identity = identity_from_certificate(&issued.leaf_der)
        .map_err(|e| text(StatusCode::UNPROCESSABLE_ENTITY, format!("renewal refused: {e}")))?;
    if issued_identity.id != identity.id {
        return Err(refuse_other_identity(state, identity, &issued_identity.id).await);
    }
    tracing::info!(device = %identity.id, serial = %issued.serial_hex, "renewal certificate issued");
    Ok(body(&EnrolResponse { chain_pem: issued.chain_pem }))
}

/// Refuses a renewal that asks for `asked` (another device identity),
/// logging and alerting it; nothing is issued.
async fn refuse_other_identity(state: &State, identity: &DeviceIdentity, asked: &str) -> Reply {
    tracing::warn!(device = %identity.id, asked, "renewal CSR asks for another device identity; refused");
    let message = format!(
        "renewal refused: the CSR asks for {asked}, but the client certificate is for {}; a renewal keeps the \
         device identity (institution code and unit) / 証明書更新を拒否: CSR が {asked} を求めていますが、\
         クライアント証明書は {} のものです（更新では機関コードとユニットを変えられません）",
        identity.id, identity.id
    );
    carry_out(state, &identity.id, &Happened::EnrolRefused { asked }, now_ms()).await;
    text(StatusCode::FORBIDDEN, message)
}
