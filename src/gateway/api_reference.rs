//! `/api/docs`: the OpenAPI document as a page people can browse — every operation with its
//! parameters, body and answers, then every schema. Rendered here from the same document
//! `/api/openapi.json` serves, once, as plain HTML: no script, nothing fetched from elsewhere.

use std::{fmt::Write as _, sync::LazyLock};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::openapi::openapi_document;
use crate::platform::html::escape;

/// The rendered page.
pub fn page() -> &'static str {
    static PAGE: LazyLock<String> = LazyLock::new(|| {
        let document = serde_json::to_value(openapi_document()).unwrap_or(Value::Null);
        render(&document)
    });
    &PAGE
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn render(doc: &Value) -> String {
    let mut html = String::with_capacity(64 * 1024);
    let title = text(&doc["info"]["title"]);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} — API reference</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title} API reference</h1>\n<p>Version {}. The machine-readable document: \
         <a href=\"/api/openapi.json\">/api/openapi.json</a>. Errors are \
         <code>application/problem+json</code>. Back to <a href=\"/\">the events</a>.</p>\n",
        text(&doc["info"]["version"])
    );
    html.push_str("<nav aria-label=\"Operations\"><ul>\n");
    for (path, method, _) in operations(doc) {
        let _ = writeln!(
            html,
            "<li><a href=\"#{}\"><span class=\"m\">{}</span> {}</a></li>",
            anchor(method, path),
            method.to_uppercase(),
            escape(path)
        );
    }
    html.push_str("</ul></nav>\n<main>\n");
    for (path, method, operation) in operations(doc) {
        render_operation(&mut html, path, method, operation);
    }
    html.push_str("<h2 id=\"schemas\">Schemas</h2>\n");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            render_schema(&mut html, name, schema);
        }
    }
    html.push_str("</main>\n</body>\n</html>\n");
    html
}

/// Every operation, by path then method.
fn operations(doc: &Value) -> Vec<(&str, &'static str, &Value)> {
    let mut all = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    all.push((path.as_str(), method, operation));
                }
            }
        }
    }
    all
}

fn render_operation(html: &mut String, path: &str, method: &str, op: &Value) {
    let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
    let _ = write!(
        html,
        "<section id=\"{}\">\n<h2><span class=\"m\">{}</span> <code>{}</code></h2>\n",
        anchor(method, path),
        method.to_uppercase(),
        escape(path)
    );
    for key in ["summary", "description"] {
        if let Some(words) = op[key].as_str() {
            let _ = writeln!(html, "<p>{}</p>", escape(words));
        }
    }
    let _ = writeln!(
        html,
        "<p class=\"meta\">{} · operation <code>{}</code></p>",
        if secured {
            "needs an access token (<code>Authorization: Bearer …</code>)"
        } else {
            "no login needed"
        },
        text(&op["operationId"])
    );
    if let Some(parameters) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        html.push_str(
            "<table><caption>Parameters</caption><tr><th scope=\"col\">name</th>\
             <th scope=\"col\">in</th><th scope=\"col\">required</th><th scope=\"col\">type</th>\
             <th scope=\"col\">meaning</th></tr>\n",
        );
        for p in parameters {
            let _ = writeln!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&p["name"]),
                text(&p["in"]),
                if p["required"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                type_of(&p["schema"]),
                text(&p["description"])
            );
        }
        html.push_str("</table>\n");
    }
    if let Some(body) = op["requestBody"]["content"].as_object() {
        for (media, content) in body {
            let _ = writeln!(
                html,
                "<p>Body (<code>{}</code>): {}</p>",
                escape(media),
                type_of(&content["schema"])
            );
        }
    }
    if let Some(responses) = op["responses"].as_object() {
        html.push_str(
            "<table><caption>Answers</caption><tr><th scope=\"col\">status</th>\
             <th scope=\"col\">meaning</th><th scope=\"col\">body</th></tr>\n",
        );
        for (status, response) in responses {
            let bodies: Vec<String> = response["content"]
                .as_object()
                .map(|content| content.values().map(|c| type_of(&c["schema"])).collect())
                .unwrap_or_default();
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(status),
                text(&response["description"]),
                bodies.join(", ")
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str("</section>\n");
}

fn render_schema(html: &mut String, name: &str, schema: &Value) {
    let _ = write!(
        html,
        "<section id=\"schema-{0}\">\n<h3><code>{0}</code></h3>\n",
        escape(name)
    );
    if let Some(words) = schema["description"].as_str() {
        let _ = writeln!(html, "<p>{}</p>", escape(words));
    }
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = schema["properties"].as_object() {
        html.push_str(
            "<table><tr><th scope=\"col\">field</th><th scope=\"col\">type</th>\
             <th scope=\"col\">required</th><th scope=\"col\">meaning</th></tr>\n",
        );
        for (field, property) in properties {
            let _ = writeln!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(field),
                type_of(property),
                if required.contains(&field.as_str()) {
                    "yes"
                } else {
                    "no"
                },
                text(&property["description"])
            );
        }
        html.push_str("</table>\n");
    } else {
        let _ = writeln!(html, "<p>{}</p>", type_of(schema));
    }
    html.push_str("</section>\n");
}

/// A schema's type as a reader wants it: a link for a named schema, `T[]`, `string (uuid)`,
/// one of an enumeration's values, `T | null`.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[combinator].as_array() {
            let parts: Vec<String> = options.iter().map(type_of).collect();
            return parts.join(" | ");
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| escape(&v.to_string())).collect();
        return format!("one of {}", values.join(", "));
    }
    let kind = match &schema["type"] {
        Value::String(kind) => escape(kind),
        Value::Array(kinds) => kinds
            .iter()
            .map(|k| escape(k.as_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "object".to_owned(),
    };
    match (kind.as_str(), schema["format"].as_str()) {
        ("array", _) => format!("{}[]", type_of(&schema["items"])),
        (_, Some(format)) => format!("{kind} ({})", escape(format)),
        _ => kind,
    }
}

fn anchor(method: &str, path: &str) -> String {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{method}{slug}")
}

/// A JSON string as escaped HTML; anything else (absent) as nothing.
fn text(value: &Value) -> String {
    value.as_str().map(escape).unwrap_or_default()
}

/// The page's policy: nothing but its own inline style, named by its hash; no script at all.
pub static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
});

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;\
padding:0 1rem;color:#1a1a1a}code{font-family:ui-monospace,monospace}a{color:#0b57d0}\
.m{display:inline-block;min-width:4.5rem;font:600 .85rem ui-monospace,monospace;color:#fff;\
background:#2f6f4f;border-radius:.3rem;padding:.1rem .4rem;text-align:center}\
nav ul{columns:2;padding:0;list-style:none}section{border-top:1px solid #ddd;margin-top:1.5rem}\
table{border-collapse:collapse;margin:.5rem 0;width:100%}th,td{border:1px solid #ccc;\
padding:.25rem .5rem;text-align:left;vertical-align:top}caption{text-align:left;font-weight:600}\
.meta{color:#444}@media (max-width:40rem){nav ul{columns:1}}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_document_is_escaped() {
        assert_eq!(
            escape("<img src=x onerror='a'>&"),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;"
        );
    }

    #[test]
    fn types_read_as_people_write_them() {
        let schema =
            serde_json::json!({"type": "array", "items": {"$ref": "#/components/schemas/Event"}});
        assert_eq!(type_of(&schema), "<a href=\"#schema-Event\">Event</a>[]");
        let schema = serde_json::json!({"type": ["string", "null"], "format": "uuid"});
        assert_eq!(type_of(&schema), "string | null (uuid)");
    }
}
