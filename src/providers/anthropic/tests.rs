//! Unit tests of the Anthropic request and response translation.

use std::time::Duration;

use super::response::*;
use super::*;
use crate::providers::Completion;
use crate::providers::Wire;

fn deployment() -> Deployment {
    let mut d = crate::deployment::test_deployment("a1", "claude", Wire::Anthropic);
    d.provider = "anthropic".into();
    d.upstream_model = "claude-sonnet-4-5".into();
    d.api_base = "https://api.anthropic.com".into();
    d.api_key = Some("sk-ant-test".into());
    d
}

fn with_ctx<R>(
    dep: &Deployment,
    call: CallType,
    body: &Value,
    f: impl FnOnce(&CallContext<'_>) -> R,
) -> R {
    let http = crate::providers::HttpClient::for_tests();
    let timeout = Duration::from_secs(5);
    let body = crate::providers::RequestBody::from_value(body);
    f(&CallContext {
        http: &http,
        deployment: dep,
        call,
        body: &body,
        timeout,
        prepared: None,
    })
}

fn build_with(dep: &Deployment, call: CallType, body: Value, stream: bool) -> UpstreamRequest {
    with_ctx(dep, call, &body, |c| build(c, stream).unwrap())
}

fn sent_body(req: &UpstreamRequest) -> Value {
    serde_json::from_slice(req.body()).unwrap()
}

fn translate(body: Value) -> Value {
    sent_body(&build_with(&deployment(), CallType::Chat, body, false))
}

fn try_parse(bytes: &[u8]) -> Result<Completion, Error> {
    with_ctx(&deployment(), CallType::Chat, &json!({}), |c| {
        parse(c, bytes)
    })
}

fn parse_json(body: Value) -> Completion {
    try_parse(body.to_string().as_bytes()).unwrap()
}

#[test]
fn request_goes_to_v1_messages_with_anthropic_headers() {
    let mut dep = deployment();
    dep.extra_headers = vec![("anthropic-beta".into(), "prompt-caching".into())];
    let body = json!({"model":"claude","messages":[{"role":"user","content":"hi"}]});
    let req = build_with(&dep, CallType::Chat, body.clone(), true);
    assert_eq!(
        req.uri().to_string(),
        "https://api.anthropic.com/v1/messages"
    );
    let h = req.headers();
    assert_eq!(h["x-api-key"], "sk-ant-test");
    assert_eq!(h["anthropic-version"], "2023-06-01");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["anthropic-beta"], "prompt-caching");
    assert_eq!(sent_body(&req)["stream"], true);

    dep.api_base = "https://proxy.example.com/anthropic/v1".into();
    let req = build_with(&dep, CallType::Chat, body, false);
    assert_eq!(
        req.uri().to_string(),
        "https://proxy.example.com/anthropic/v1/messages"
    );
}

#[test]
fn embeddings_and_text_completions_are_rejected() {
    for call in [CallType::Embedding, CallType::Completion] {
        let err = with_ctx(&deployment(), call, &json!({"input":"x"}), |c| {
            build(c, false)
        })
        .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("not supported by anthropic"));
    }
}

#[test]
fn system_messages_are_lifted_and_defaults_filled() {
    let sent = translate(json!({
        "model": "claude",
        "messages": [
            {"role":"system","content":"Be brief."},
            {"role":"developer","content":[{"type":"text","text":"Use French."}]},
            {"role":"user","content":"hi"}
        ],
        "stop": "END",
        "temperature": 0.2,
        "user": "u-42",
        "n": 1,
        "presence_penalty": 0.5,
        "response_format": {"type":"json_object"},
        "metadata": {"tag":"x"},
        "mock_response": "x"
    }));
    assert_eq!(
        sent,
        json!({
            "model": "claude-sonnet-4-5",
            "system": "Be brief.\nUse French.",
            "messages": [{"role":"user","content":"hi"}],
            "max_tokens": 4096,
            "temperature": 0.2,
            "stop_sequences": ["END"],
            "metadata": {"user_id":"u-42"}
        })
    );
}

#[test]
fn max_completion_tokens_and_deployment_defaults_are_used() {
    let mut dep = deployment();
    dep.default_params.insert("temperature".into(), json!(0.7));
    dep.default_params.insert("top_k".into(), json!(5));
    dep.default_params
        .insert("frequency_penalty".into(), json!(1));
    let body = json!({"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":100,"temperature":0,"stop":["a","\n","b"]});
    let req = build_with(&dep, CallType::Chat, body, false);
    let sent = sent_body(&req);
    assert_eq!(sent["max_tokens"], 100);
    assert_eq!(sent["temperature"], 0);
    assert_eq!(sent["top_k"], 5);
    assert_eq!(sent["stop_sequences"], json!(["a", "b"]));
    assert!(sent.get("frequency_penalty").is_none());
}

#[test]
fn cached_system_parts_stay_blocks() {
    let sent = translate(json!({"messages":[
        {"role":"system","content":[{"type":"text","text":"long doc","cache_control":{"type":"ephemeral"}}]},
        {"role":"system","content":"short"},
        {"role":"user","content":"q"}
    ]}));
    assert_eq!(
        sent["system"],
        json!([
            {"type":"text","text":"long doc","cache_control":{"type":"ephemeral"}},
            {"type":"text","text":"short"}
        ])
    );
}

#[test]
fn tools_and_tool_choice_are_translated() {
    let tools = json!([{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]);
    let base = |choice: Value, parallel: Value| {
        translate(
            json!({"messages":[{"role":"user","content":"hi"}],"tools":tools,"tool_choice":choice,"parallel_tool_calls":parallel}),
        )
    };
    let sent = base(json!("auto"), Value::Null);
    assert_eq!(
        sent["tools"],
        json!([{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}])
    );
    assert_eq!(sent["tool_choice"], json!({"type":"auto"}));
    assert_eq!(
        base(json!("required"), Value::Null)["tool_choice"],
        json!({"type":"any"})
    );
    assert_eq!(
        base(json!("none"), Value::Null)["tool_choice"],
        json!({"type":"none"})
    );
    assert_eq!(
        base(
            json!({"type":"function","function":{"name":"get_weather"}}),
            json!(false)
        )["tool_choice"],
        json!({"type":"tool","name":"get_weather","disable_parallel_tool_use":true})
    );
    assert_eq!(
        base(Value::Null, json!(false))["tool_choice"],
        json!({"type":"auto","disable_parallel_tool_use":true})
    );
}

#[test]
fn tool_calls_and_consecutive_tool_results_round_trip() {
    let sent = translate(json!({"messages":[
        {"role":"user","content":"weather in Paris and Rome?"},
        {"role":"assistant","content":"Checking.","tool_calls":[
            {"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
            {"id":"toolu_2","type":"function","function":{"name":"get_weather","arguments":""}}
        ]},
        {"role":"tool","tool_call_id":"toolu_1","content":"sunny"},
        {"role":"tool","tool_call_id":"toolu_2","content":[{"type":"text","text":"rain"}]},
        {"role":"user","content":"thanks"}
    ]}));
    assert_eq!(
        sent["messages"],
        json!([
            {"role":"user","content":"weather in Paris and Rome?"},
            {"role":"assistant","content":[
                {"type":"text","text":"Checking."},
                {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}},
                {"type":"tool_use","id":"toolu_2","name":"get_weather","input":{}}
            ]},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"},
                {"type":"tool_result","tool_use_id":"toolu_2","content":"rain"},
                {"type":"text","text":"thanks"}
            ]}
        ])
    );
}

#[test]
fn image_parts_become_base64_or_url_sources() {
    let sent = translate(json!({"messages":[{"role":"user","content":[
        {"type":"text","text":"what is this?","cache_control":{"type":"ephemeral"}},
        {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
        {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg","detail":"high"}}
    ]}]}));
    assert_eq!(
        sent["messages"][0]["content"],
        json!([
            {"type":"text","text":"what is this?","cache_control":{"type":"ephemeral"}},
            {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
            {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}}
        ])
    );
}

#[test]
fn consecutive_user_messages_are_merged() {
    let sent = translate(json!({"messages":[
        {"role":"user","content":"one"},
        {"role":"user","content":"two"},
        {"role":"assistant","content":"ok"}
    ]}));
    assert_eq!(
        sent["messages"],
        json!([
            {"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]},
            {"role":"assistant","content":"ok"}
        ])
    );
}

#[test]
fn a_text_answer_becomes_a_chat_completion() {
    let c = parse_json(json!({
        "id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
        "content":[{"type":"text","text":"Hello"},{"type":"text","text":" there"}],
        "stop_reason":"end_turn","stop_sequence":null,
        "usage":{"input_tokens":12,"output_tokens":3}
    }));
    let b = &c.body;
    assert_eq!(b["id"], "msg_01");
    assert_eq!(b["object"], "chat.completion");
    assert!(b["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(b["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(
        b["choices"],
        json!([{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}])
    );
    assert_eq!(
        b["usage"],
        json!({"prompt_tokens":12,"completion_tokens":3,"total_tokens":15})
    );
    assert_eq!(c.usage.unwrap().prompt_tokens, 12);
}

#[test]
fn a_tool_use_answer_becomes_tool_calls() {
    let c = parse_json(json!({
        "id":"msg_02","type":"message","role":"assistant","model":"claude-sonnet-4-5",
        "content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}],
        "stop_reason":"tool_use","usage":{"input_tokens":20,"output_tokens":8}
    }));
    assert_eq!(
        c.body["choices"][0],
        json!({"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}})
    );
}

#[test]
fn cache_tokens_count_as_prompt_tokens() {
    let c = parse_json(json!({
        "id":"msg_03","type":"message","role":"assistant","model":"claude-sonnet-4-5",
        "content":[{"type":"text","text":"ok"}],"stop_reason":"max_tokens",
        "usage":{"input_tokens":100,"cache_read_input_tokens":50,"cache_creation_input_tokens":25,"output_tokens":10}
    }));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens()),
        (175, 10, 185)
    );
    assert_eq!((u.cache_read_tokens, u.cache_creation_tokens), (50, 25));
    assert_eq!(c.body["usage"]["total_tokens"], 185);
    assert_eq!(
        c.body["usage"]["prompt_tokens_details"]["cached_tokens"],
        50
    );
    assert_eq!(c.body["choices"][0]["finish_reason"], "length");
}

#[test]
fn malformed_answers_are_bad_responses() {
    assert_eq!(try_parse(b"not json").unwrap_err().status, 502);
    assert_eq!(try_parse(b"{\"id\":\"x\"}").unwrap_err().status, 502);
    let overloaded =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(try_parse(overloaded).unwrap_err().status, 529);
}
