//! `POST /v1/enrol`: a renewal CSR, turned into a certificate by the
//! server's [`Enroller`](crate::enrol::Enroller) (test CA or EST).

use cpe_protocol::{decode, EnrolRequest, EnrolResponse};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::routes::{body, decode_error, read_body, text, Reply};
use super::tls::DeviceIdentity;
use super::State;
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
    match enroller.enrol(&enrolment).await {
        Ok(issued) => {
            tracing::info!(device = %identity.id, serial = %issued.serial_hex, "renewal certificate issued");
            Ok(body(&EnrolResponse { chain_pem: issued.chain_pem }))
        }
        Err(e) => {
            tracing::warn!(device = %identity.id, error = %e, "renewal not issued");
            let status = match e {
                EnrolError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
                EnrolError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                EnrolError::BadAnswer(_) => StatusCode::BAD_GATEWAY,
            };
            Err(text(status, e.to_string()))
        }
    }
}
