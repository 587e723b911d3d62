//! The gRPC codec of the `KasminaControl` stubs: prost's encoding, with a body that does not
//! decode as the expected message reported as `INVALID_ARGUMENT` (the caller sent something
//! malformed) instead of tonic-prost's `INTERNAL`.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// A [`Codec`] for Leyline messages; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct LeylineCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeylineCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for LeylineCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + prost::Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = LeylineDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        LeylineDecoder(PhantomData)
    }
}

/// Decodes one `U`; a malformed body is `INVALID_ARGUMENT` naming the message type.
#[derive(Debug, Clone, Copy)]
pub struct LeylineDecoder<U>(PhantomData<U>);

impl<U: Message + prost::Name + Default> Decoder for LeylineDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("the body is not a valid {}: {e}", U::full_name())))
    }
}
