//! Every tool schema is plain JSON Schema 2020-12: only its own keywords, only its own formats.
//! (Hosts validate schemas with AJV in strict mode or warn on each unknown format: `claude mcp
//! list` printed 44 warnings per server while the schemas carried `uint32`/`uint64`.)

use mcp_chat::pane;
use serde_json::Value;

/// The keywords of JSON Schema 2020-12 (core, applicator, validation, meta-data, format,
/// content, unevaluated vocabularies).
const KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$comment",
    "$vocabulary",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "prefixItems",
    "items",
    "contains",
    "properties",
    "patternProperties",
    "additionalProperties",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "type",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxContains",
    "minContains",
    "maxProperties",
    "minProperties",
    "required",
    "dependentRequired",
    "title",
    "description",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "examples",
    "format",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
];

/// The formats JSON Schema 2020-12 defines.
const FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Appends to `problems` every keyword or format in `schema` that JSON Schema does not define.
fn check(schema: &Value, path: &str, problems: &mut Vec<String>) {
    let Value::Object(map) = schema else {
        if !schema.is_boolean() {
            problems.push(format!("{path}: a schema must be an object or a boolean"));
        }
        return;
    };
    for (key, value) in map {
        let here = format!("{path}/{key}");
        if !KEYWORDS.contains(&key.as_str()) {
            problems.push(format!("{here}: unknown keyword"));
            continue;
        }
        match key.as_str() {
            "$defs" | "properties" | "patternProperties" | "dependentSchemas" => {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    check(sub, &format!("{here}/{name}"), problems);
                }
            }
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                for (i, sub) in value.as_array().into_iter().flatten().enumerate() {
                    check(sub, &format!("{here}/{i}"), problems);
                }
            }
            "not"
            | "if"
            | "then"
            | "else"
            | "items"
            | "contains"
            | "additionalProperties"
            | "propertyNames"
            | "unevaluatedItems"
            | "unevaluatedProperties"
            | "contentSchema" => check(value, &here, problems),
            "format" if !value.as_str().is_some_and(|f| FORMATS.contains(&f)) => {
                problems.push(format!("{here}: unknown format {value}"));
            }
            _ => {}
        }
    }
}

#[test]
fn every_schema_is_plain_json_schema() {
    let mut problems = Vec::new();
    for tool in pane::tools_for(true) {
        let input = Value::Object((*tool.input_schema).clone());
        check(&input, &format!("{}/inputSchema", tool.name), &mut problems);
        let output = tool.output_schema.expect("every tool has an output schema");
        let output = Value::Object((*output).clone());
        check(
            &output,
            &format!("{}/outputSchema", tool.name),
            &mut problems,
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn unsigned_numbers_keep_their_minimum() {
    let tool = pane::tool_for("wait_for_message", false).unwrap();
    let timeout = &tool.input_schema["properties"]["timeout_secs"];
    assert_eq!(timeout["minimum"], 0, "{timeout}");
    assert!(timeout.get("format").is_none());
}

/// The checker itself catches what it must.
#[test]
fn the_checker_refuses_custom_keywords_and_formats() {
    let mut problems = Vec::new();
    let schema = serde_json::json!({
        "type": "object",
        "properties": { "n": { "type": "integer", "format": "uint32" }, "format": { "type": "string" } },
        "nullable": true,
    });
    check(&schema, "", &mut problems);
    assert_eq!(problems.len(), 2, "{problems:?}");
}
