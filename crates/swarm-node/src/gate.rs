//! A tower layer that looks at every gRPC call before its service does and
//! either lets it through (perhaps with something added to its extensions)
//! or answers it with a gRPC error: what the port check ([`crate::ports`])
//! and tokens and roles ([`crate::auth`]) are.

use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;

/// A check of every call.
pub trait Gate: Clone {
    /// Lets `request` through (it may add to its extensions), or refuses it
    /// with the status the caller gets.
    fn check<B>(&self, request: &mut http::Request<B>) -> Result<(), Status>;
}

/// The service name and method of a gRPC call's path:
/// "/swarm.v1.WorkService/Claim" -> ("swarm.v1.WorkService", "Claim").
pub fn service_and_method<B>(request: &http::Request<B>) -> (&str, &str) {
    let mut parts = request.uri().path().trim_start_matches('/').splitn(2, '/');
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

/// Applies a [`Gate`] to every call of the services it wraps.
#[derive(Clone)]
pub struct GateLayer<G>(pub G);

impl<S, G: Gate> tower::Layer<S> for GateLayer<G> {
    type Service = GateService<S, G>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.0.clone(),
        }
    }
}

/// [`GateLayer`]'s service.
#[derive(Clone)]
pub struct GateService<S, G> {
    inner: S,
    gate: G,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, G, B, RB> tower::Service<http::Request<B>> for GateService<S, G>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    G: Gate,
    RB: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.gate.check(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => {
                let response = status.into_http::<RB>();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
