//! Every body the carrier server and the agent decode from the network
//! (`cpe_protocol::decode`): report batches, acknowledgements, commands,
//! enrolment, and the enforcement receipts inside acknowledgements. None may
//! panic or allocate without bound.
#![no_main]

use cpe_protocol::{
    decode, BatchAck, CommandAck, CommandList, EnrolRequest, EnrolResponse, Pong, ReportBatch,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = decode::<ReportBatch>(data) {
        // Whatever decodes can be encoded again (the server stores it).
        let _ = cpe_protocol::encode(&batch.records);
    }
    let _ = decode::<BatchAck>(data);
    let _ = decode::<CommandList>(data);
    let _ = decode::<CommandAck>(data);
    let _ = decode::<EnrolRequest>(data);
    let _ = decode::<EnrolResponse>(data);
    let _ = decode::<Pong>(data);
    let _ = cpe_protocol::receipt::decode_receipt(data);
});
