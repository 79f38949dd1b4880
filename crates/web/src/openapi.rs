//! OpenAPI pieces every service's document shares: the bearer scheme and the answers the
//! platform itself gives, whatever the handler (extractors, middleware, the gateway in front).
//!
//! A handler documents the statuses its own logic chooses (409 for a stale version, 422 for
//! a business rule). The statuses that come from the edge are documented once here, as shared
//! `components.responses` that [`PlatformResponses`] references from every operation they can
//! reach, so a client generated from any service's document (or a contract fuzzer) knows
//! every status and content type it can receive.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Schema, Type as SchemaType,
};

use crate::problem::PROBLEM_JSON;

/// Declares the `bearer` security scheme (a JWT from user-service) that operations reference
/// with `security(("bearer" = []))`. Use as `#[openapi(modifiers(&web::openapi::BearerAuth))]`.
#[derive(Debug, Clone, Copy)]
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Sets `minProperties` on named component schemas: bodies of partial updates, which the
/// handlers refuse when they change nothing (`("ProfilePatch", 1)`; a body that must also carry
/// a version counts it too). utoipa's own `min_properties` container attribute emits
/// `maxProperties` in 5.x, so it cannot be used for this.
#[derive(Debug, Clone, Copy)]
pub struct MinProperties(pub &'static [(&'static str, usize)]);

impl utoipa::Modify for MinProperties {
    fn modify(&self, openapi: &mut OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (name, min) in self.0 {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(*name) {
                object.min_properties = Some(*min);
            }
        }
    }
}

/// An OpenAPI link from one operation's response to another operation: how a client (and a
/// stateful fuzzer) goes from a create to the reads and actions on what it created.
#[derive(Debug, Clone, Copy)]
pub struct OperationLink {
    /// The operation answering: method (lower case), path, status.
    pub from: (&'static str, &'static str, &'static str),
    /// The link's name, e.g. `GetProduct`.
    pub name: &'static str,
    /// The operation it leads to: method (lower case) and path.
    pub to: (&'static str, &'static str),
    /// Its parameters by name, each a runtime expression such as `$response.body#/id`.
    pub parameters: &'static [(&'static str, &'static str)],
    /// Its request body: JSON whose strings may be runtime expressions.
    pub request_body: Option<&'static str>,
}

/// Adds links to the responses they start from. A link whose operation or response is not in
/// the document is a mistake in the service's list, caught by its tests through
/// [`missing_links`].
#[derive(Debug, Clone, Copy)]
pub struct Links(pub &'static [OperationLink]);

fn operation_mut<'a>(
    openapi: &'a mut OpenApi,
    method: &str,
    path: &str,
) -> Option<&'a mut Operation> {
    let item = openapi.paths.paths.get_mut(path)?;
    match method {
        "get" => item.get.as_mut(),
        "put" => item.put.as_mut(),
        "post" => item.post.as_mut(),
        "delete" => item.delete.as_mut(),
        "patch" => item.patch.as_mut(),
        _ => None,
    }
}

/// `#/paths/<path as a JSON pointer token>/<method>`.
fn operation_ref(method: &str, path: &str) -> String {
    format!(
        "#/paths/{}/{method}",
        path.replace('~', "~0").replace('/', "~1")
    )
}

/// The links of `links` that do not fit `openapi` (unknown operation or status), by name.
pub fn missing_links(openapi: &OpenApi, links: &Links) -> Vec<&'static str> {
    let mut copy = openapi.clone();
    links
        .0
        .iter()
        .filter(|link| {
            let (method, path, status) = link.from;
            let from_ok = operation_mut(&mut copy, method, path)
                .is_some_and(|op| op.responses.responses.contains_key(status));
            let to_ok = operation_mut(&mut copy, link.to.0, link.to.1).is_some();
            !(from_ok && to_ok)
        })
        .map(|link| link.name)
        .collect()
}

impl utoipa::Modify for Links {
    fn modify(&self, openapi: &mut OpenApi) {
        for link in self.0 {
            let (method, path, status) = link.from;
            let mut builder = utoipa::openapi::link::LinkBuilder::new()
                .operation_ref(operation_ref(link.to.0, link.to.1));
            for (name, expression) in link.parameters {
                builder = builder.parameter(*name, *expression);
            }
            if let Some(body) = link.request_body {
                builder =
                    builder.request_body(serde_json::from_str::<serde_json::Value>(body).ok());
            }
            let built = builder.build();
            let Some(operation) = operation_mut(openapi, method, path) else {
                continue;
            };
            if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
                response.links.insert(link.name.to_owned(), RefOr::T(built));
            }
        }
    }
}

/// Spells the links of a rendered document as OpenAPI does. utoipa 5 serialises a link's
/// fields in snake case (`operation_ref`, `request_body`), which no client reads; every
/// service's document passes through here (in [`crate::service_router`]) before it is served.
/// A document that does not parse is served as it is.
pub fn with_openapi_link_names(document: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(document) else {
        return document.to_owned();
    };
    rename_link_fields(&mut value);
    serde_json::to_string(&value).unwrap_or_else(|_| document.to_owned())
}

fn rename_link_fields(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(links)) = map.get_mut("links") {
                for link in links.values_mut() {
                    if let serde_json::Value::Object(link) = link {
                        for (from, to) in [
                            ("operation_ref", "operationRef"),
                            ("operation_id", "operationId"),
                            ("request_body", "requestBody"),
                        ] {
                            if let Some(field) = link.remove(from) {
                                link.insert(to.to_owned(), field);
                            }
                        }
                    }
                }
            }
            for child in map.values_mut() {
                rename_link_fields(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(rename_link_fields),
        _ => {}
    }
}

/// One shared response: its component name, status and when it happens.
struct Shared {
    name: &'static str,
    status: u16,
    description: &'static str,
    retry_after: bool,
}

const BAD_REQUEST: Shared = Shared {
    name: "BadRequest",
    status: 400,
    description: "The request cannot be read: the body is not JSON, or the query string does not parse.",
    retry_after: false,
};
const UNAUTHORIZED: Shared = Shared {
    name: "Unauthorized",
    status: 401,
    description: "No bearer token, or one that is not valid (signature, expiry, audience, issuer).",
    retry_after: false,
};
const NOT_FOUND: Shared = Shared {
    name: "NotFound",
    status: 404,
    description: "No such resource (also a path parameter that is not a valid id).",
    retry_after: false,
};
const PAYLOAD_TOO_LARGE: Shared = Shared {
    name: "PayloadTooLarge",
    status: 413,
    description: "The body exceeds the limit (64 KiB at a service, the gateway's limit in front).",
    retry_after: false,
};
const UNSUPPORTED_MEDIA_TYPE: Shared = Shared {
    name: "UnsupportedMediaType",
    status: 415,
    description: "The body is not sent as `Content-Type: application/json`.",
    retry_after: false,
};
const VALIDATION: Shared = Shared {
    name: "Validation",
    status: 422,
    description: "Well-formed but invalid: `errors` names every offending field.",
    retry_after: false,
};
const TOO_MANY_REQUESTS: Shared = Shared {
    name: "TooManyRequests",
    status: 429,
    description: "A rate limit (the gateway's per client and per user buckets, or a throttle of the service); retry after `Retry-After` seconds.",
    retry_after: true,
};
const INTERNAL: Shared = Shared {
    name: "Internal",
    status: 500,
    description: "An unexpected failure; the body carries only a generic message and the trace id.",
    retry_after: false,
};
const BAD_GATEWAY: Shared = Shared {
    name: "BadGateway",
    status: 502,
    description: "Through the gateway: the service could not be reached.",
    retry_after: false,
};
const UNAVAILABLE: Shared = Shared {
    name: "Unavailable",
    status: 503,
    description: "Busy or a dependency is down (request timeout, full queue, no healthy instance); retry later, after `Retry-After` seconds when given.",
    retry_after: true,
};
const GATEWAY_TIMEOUT: Shared = Shared {
    name: "GatewayTimeout",
    status: 504,
    description: "Through the gateway: the service did not answer in time.",
    retry_after: false,
};

const ALL_SHARED: [&Shared; 11] = [
    &BAD_REQUEST,
    &UNAUTHORIZED,
    &NOT_FOUND,
    &PAYLOAD_TOO_LARGE,
    &UNSUPPORTED_MEDIA_TYPE,
    &VALIDATION,
    &TOO_MANY_REQUESTS,
    &INTERNAL,
    &BAD_GATEWAY,
    &UNAVAILABLE,
    &GATEWAY_TIMEOUT,
];

/// A problem document answer, as the platform sends it.
fn problem_response(description: &str, retry_after: bool) -> Response {
    let mut builder = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    if retry_after {
        builder = builder.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("Seconds to wait before retrying."))
                .build(),
        );
    }
    builder.build()
}

/// Adds the platform's answers to every operation and sends every error as
/// `application/problem+json`. Apply after the operations' own responses, as the last modifier:
/// `#[openapi(modifiers(&BearerAuth, &web::openapi::PlatformResponses))]`.
///
/// What each operation gets, from what it declares:
/// - every operation: 429 (the gateway's rate limits), 500, 502, 503 (request timeout, busy
///   pools, load shedding, no healthy instance), 504;
/// - a JSON request body: 400 (not JSON), 413 (body limit), 415 (content type), 422 (shape);
/// - query parameters: 400 (the query string does not parse) and 422 (a value out of range);
/// - path parameters: 404 (a malformed id names no resource);
/// - a security requirement: 401.
///
/// A status the operation documents itself keeps its own description; only its error content
/// type is corrected to `application/problem+json`.
#[derive(Debug, Clone, Copy)]
pub struct PlatformResponses;

impl utoipa::Modify for PlatformResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for shared in ALL_SHARED {
            components.responses.insert(
                shared.name.to_owned(),
                RefOr::T(problem_response(shared.description, shared.retry_after)),
            );
        }
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_platform_responses(operation);
            }
        }
    }
}

fn add_platform_responses(operation: &mut Operation) {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has_query = parameters
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query));
    let has_path = parameters
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let has_body = operation.request_body.is_some();
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());

    let mut wanted: Vec<&Shared> = vec![
        &TOO_MANY_REQUESTS,
        &INTERNAL,
        &BAD_GATEWAY,
        &UNAVAILABLE,
        &GATEWAY_TIMEOUT,
    ];
    if has_body {
        wanted.extend([
            &BAD_REQUEST,
            &PAYLOAD_TOO_LARGE,
            &UNSUPPORTED_MEDIA_TYPE,
            &VALIDATION,
        ]);
    }
    if has_query {
        wanted.extend([&BAD_REQUEST, &VALIDATION]);
    }
    if has_path {
        wanted.push(&NOT_FOUND);
    }
    if secured {
        wanted.push(&UNAUTHORIZED);
    }

    let responses = &mut operation.responses.responses;
    for (status, response) in responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (is_error, response)
            && let Some(content) = response.content.shift_remove("application/json")
        {
            response.content.insert(PROBLEM_JSON.to_owned(), content);
        }
    }
    for shared in wanted {
        responses
            .entry(shared.status.to_string())
            .or_insert_with(|| {
                RefOr::Ref(Ref::new(format!("#/components/responses/{}", shared.name)))
            });
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    use super::*;

    #[derive(serde::Deserialize, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Body {
        name: String,
    }

    /// A route with a body, a path parameter and a token, documenting only its own outcome.
    #[utoipa::path(post, path = "/things/{id}", request_body = Body,
        params(("id" = String, Path)),
        security(("bearer" = [])),
        responses((status = 201), (status = 409, body = crate::Problem)))]
    #[allow(dead_code)]
    async fn create() {}

    #[utoipa::path(get, path = "/things")]
    #[allow(dead_code)]
    async fn list() {}

    #[derive(utoipa::OpenApi)]
    #[openapi(paths(create, list), components(schemas(crate::Problem, crate::FieldError)),
        modifiers(&BearerAuth, &PlatformResponses))]
    struct Doc;

    fn statuses(doc: &serde_json::Value, path: &str, method: &str) -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_edge_status_is_documented_where_it_can_happen() {
        let doc = serde_json::to_value(Doc::openapi()).unwrap_or_default();
        let create = statuses(&doc, "/things/{id}", "post");
        for status in [
            "201", "400", "401", "404", "409", "413", "415", "422", "429", "500", "502", "503",
            "504",
        ] {
            assert!(
                create.contains(&status.to_owned()),
                "{status} in {create:?}"
            );
        }
        let list = statuses(&doc, "/things", "get");
        assert!(!list.contains(&"401".to_owned()), "unsecured: {list:?}");
        assert!(!list.contains(&"415".to_owned()), "no body: {list:?}");
        assert!(list.contains(&"503".to_owned()));
    }

    #[test]
    fn links_are_spelled_as_openapi_spells_them() {
        const LINKS: Links = Links(&[OperationLink {
            from: ("post", "/things/{id}", "201"),
            name: "List",
            to: ("get", "/things"),
            parameters: &[("id", "$response.body#/id")],
            request_body: Some(r#"{"name": "$request.body#/name"}"#),
        }]);
        let mut doc = Doc::openapi();
        assert!(missing_links(&doc, &LINKS).is_empty());
        utoipa::Modify::modify(&LINKS, &mut doc);
        let json = with_openapi_link_names(&doc.to_json().unwrap_or_default());
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let link = &value["paths"]["/things/{id}"]["post"]["responses"]["201"]["links"]["List"];
        assert_eq!(link["operationRef"], "#/paths/~1things/get", "{link}");
        assert_eq!(link["requestBody"]["name"], "$request.body#/name", "{link}");
        assert!(link.get("operation_ref").is_none(), "{link}");
    }

    #[test]
    fn errors_are_problem_json() {
        let doc = serde_json::to_value(Doc::openapi()).unwrap_or_default();
        let conflict = &doc["paths"]["/things/{id}"]["post"]["responses"]["409"]["content"];
        assert!(conflict.get(PROBLEM_JSON).is_some(), "{conflict}");
        assert!(conflict.get("application/json").is_none(), "{conflict}");
        let shared = &doc["components"]["responses"]["TooManyRequests"];
        assert!(shared["content"].get(PROBLEM_JSON).is_some());
        assert!(shared["headers"].get("Retry-After").is_some());
    }
}
