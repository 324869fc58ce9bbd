//! `POST /v1/enrol`: a renewal CSR signed by the enrolment CA.

use cpe_protocol::{decode, EnrolRequest, EnrolResponse};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::routes::{body, decode_error, read_body, text, Reply};
use super::tls::DeviceIdentity;
use super::State;
use crate::pki::validity::Validity;

pub(super) async fn enrol(
    state: &State,
    identity: &DeviceIdentity,
    req: Request<Incoming>,
) -> Result<Reply, Reply> {
    let request: EnrolRequest = decode(&read_body(req).await?).map_err(|e| decode_error(&e))?;
    let Some(ca) = &state.config.enrol_ca else {
        return Err(text(StatusCode::NOT_IMPLEMENTED, "this server does not sign renewals (no --enrol-ca)"));
    };
    let code = identity
        .institution_code
        .parse()
        .map_err(|_| text(StatusCode::FORBIDDEN, "client certificate has no institution code"))?;
    let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let validity = Validity::new(now, state.config.enrol_days)
        .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match ca.sign_csr(&request.csr_pem, validity, Some(&code)) {
        Ok(signed) => {
            tracing::info!(device = %identity.id, serial = %signed.serial_hex(), "renewal certificate issued");
            Ok(body(&EnrolResponse { chain_pem: signed.chain_pem }))
        }
        Err(e) => Err(text(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
    }
}
