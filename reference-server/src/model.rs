//! The scripted model of section 11: a pure function from a message and the registered skills to a
//! script. The turn runner (`turn.rs`) plays the script: it adds `turn_id`, allocates request ids,
//! waits for replies, paces and streams tokens.

use std::time::Duration;

use serde_json::{json, Value};

use crate::store::Skill;

/// `#long=N` accepts at most this many words; larger values are clamped.
pub const MAX_LONG_WORDS: u64 = 1_000_000;
/// `#pace=MS` accepts at most this many milliseconds; larger values are clamped.
pub const MAX_PACE_MS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// The message without directives, words joined by single spaces.
    pub text: String,
    /// `#pace=MS`, overriding the server's token pace for this turn.
    pub pace: Option<Duration>,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A turn event, without `turn_id` (the runner adds it).
    Emit(Value),
    /// `confirmation_request` → wait → `confirmation_result`, then `on_approve` if approved.
    Confirm {
        tool: String,
        arguments: Value,
        prompt: String,
        on_approve: Vec<Value>,
    },
    /// `ask_human` → wait for `human_reply`.
    AskHuman { question: String },
    /// End the turn with a terminal `error`.
    Fail { code: &'static str, message: String },
    /// Stream the answer as tokens, then `final_answer`. Always the last action when present.
    Answer(Answer),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Parts(Vec<AnswerPart>),
    /// `#long=N`: the words `w0 … w(N-1)`.
    Long(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum AnswerPart {
    Text(String),
    /// ` [confirmed]` or ` [denied]`, known once the client replied.
    Confirmation,
    /// ` [human: <reply>]`.
    HumanReply,
}

/// What the client answered during the turn, needed to render the answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replies {
    pub approved: Option<bool>,
    pub human: Option<String>,
}

impl Answer {
    pub fn render(&self, replies: &Replies) -> String {
        match self {
            Answer::Long(n) => (0..*n).map(long_word).collect(),
            Answer::Parts(parts) => parts
                .iter()
                .map(|p| match p {
                    AnswerPart::Text(t) => t.clone(),
                    AnswerPart::Confirmation => match replies.approved {
                        Some(true) => " [confirmed]".to_owned(),
                        _ => " [denied]".to_owned(),
                    },
                    AnswerPart::HumanReply => {
                        format!(" [human: {}]", replies.human.as_deref().unwrap_or(""))
                    }
                })
                .collect(),
        }
    }
}

/// The `i`-th token of a `#long` answer: `w0`, then ` w1`, ` w2`, … (split before each space).
pub fn long_word(i: u64) -> String {
    if i == 0 {
        "w0".to_owned()
    } else {
        format!(" w{i}")
    }
}

/// Splits an answer before each space, so the pieces concatenate to the answer exactly. An empty
/// answer has no tokens; no token is empty.
pub fn split_tokens(answer: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in answer.char_indices() {
        if c == ' ' && i > start {
            out.push(&answer[start..i]);
            start = i;
        }
    }
    if start < answer.len() {
        out.push(&answer[start..]);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Tool,
    FailTool,
    Confirm,
    Ask,
    Team,
    Error,
}

/// Builds the script for one message.
pub fn script(content: &str, skills: &[Skill]) -> Script {
    let mut words = Vec::new();
    let mut flows: Vec<Flow> = Vec::new();
    let mut long = None;
    let mut pace = None;
    for w in content.split_whitespace() {
        let Some(d) = w.strip_prefix('#') else {
            words.push(w);
            continue;
        };
        let flow = match d {
            "tool" => Some(Flow::Tool),
            "failtool" => Some(Flow::FailTool),
            "confirm" => Some(Flow::Confirm),
            "ask" => Some(Flow::Ask),
            "team" => Some(Flow::Team),
            "error" => Some(Flow::Error),
            _ => {
                // Valued directives; a malformed value makes the word an unknown directive, ignored
                // like any other.
                if let Some(n) = d.strip_prefix("long=").and_then(|v| v.parse::<u64>().ok()) {
                    long.get_or_insert(n.min(MAX_LONG_WORDS));
                } else if let Some(ms) = d.strip_prefix("pace=").and_then(|v| v.parse::<u64>().ok())
                {
                    pace.get_or_insert(Duration::from_millis(ms.min(MAX_PACE_MS)));
                }
                None
            }
        };
        if let Some(f) = flow {
            if !flows.contains(&f) {
                flows.push(f);
            }
        }
    }
    let text = words.join(" ");

    let mut actions = vec![Action::Emit(
        json!({"type": "thinking", "content": format!("Thinking about: {text}")}),
    )];
    let mut matched = Vec::new();
    for skill in skills {
        let hit = skill
            .keywords
            .iter()
            .find(|k| words.iter().any(|w| w.to_lowercase() == k.to_lowercase()));
        if let Some(k) = hit {
            actions.push(Action::Emit(
                json!({"type": "skill_match", "skill": skill.name, "keyword": k}),
            ));
            matched.push(skill.name.clone());
        }
    }

    let mut parts = vec![AnswerPart::Text(format!("You said: {text}"))];
    let mut calls = 0u32;
    let mut next_call = || {
        calls += 1;
        format!("call-{calls}")
    };
    for flow in flows {
        match flow {
            Flow::Tool => {
                let id = next_call();
                actions.extend([
                    Action::Emit(json!({"type": "step", "name": "tool", "status": "started"})),
                    Action::Emit(json!({"type": "tool_call", "call_id": id, "name": "echo", "arguments": {"text": text}})),
                    Action::Emit(json!({"type": "tool_result", "call_id": id, "status": "ok", "output": {"text": text}})),
                    Action::Emit(json!({"type": "step", "name": "tool", "status": "completed"})),
                ]);
                parts.push(AnswerPart::Text(format!(" [tool: {text}]")));
            }
            Flow::FailTool => {
                let id = next_call();
                actions.extend([
                    Action::Emit(json!({"type": "tool_call", "call_id": id, "name": "fail", "arguments": {}})),
                    Action::Emit(json!({"type": "tool_result", "call_id": id, "status": "error",
                        "output": {"error": "tool failed on purpose"}})),
                ]);
                parts.push(AnswerPart::Text(" [tool failed]".into()));
            }
            Flow::Confirm => {
                let id = next_call();
                let arguments = json!({"path": "/tmp/demo.txt"});
                actions.push(Action::Confirm {
                    tool: "delete_file".into(),
                    arguments: arguments.clone(),
                    prompt: "Allow delete_file on /tmp/demo.txt?".into(),
                    on_approve: vec![
                        json!({"type": "tool_call", "call_id": id, "name": "delete_file", "arguments": arguments}),
                        json!({"type": "tool_result", "call_id": id, "status": "ok", "output": {"deleted": true}}),
                    ],
                });
                parts.push(AnswerPart::Confirmation);
            }
            Flow::Ask => {
                actions.push(Action::AskHuman {
                    question: "What name should I use?".into(),
                });
                parts.push(AnswerPart::HumanReply);
            }
            Flow::Team => {
                actions.extend(team_events(&text).into_iter().map(Action::Emit));
                parts.push(AnswerPart::Text(
                    " [team: researcher and writer agree]".into(),
                ));
            }
            Flow::Error => {
                actions.push(Action::Fail {
                    code: "INTERNAL_ERROR",
                    message: "scripted internal error".into(),
                });
                return Script {
                    text,
                    pace,
                    actions,
                };
            }
        }
    }
    for name in matched {
        parts.push(AnswerPart::Text(format!(" [skill: {name}]")));
    }
    let answer = match long {
        Some(n) => Answer::Long(n),
        None => Answer::Parts(parts),
    };
    actions.push(Action::Answer(answer));
    Script {
        text,
        pace,
        actions,
    }
}

const EXPERTS: [(&str, &str); 2] = [("researcher", "research"), ("writer", "write")];

fn team_events(text: &str) -> Vec<Value> {
    let team = "team-1";
    let plan = |statuses: [&str; 2]| {
        Value::Array(
            EXPERTS
                .iter()
                .zip(statuses)
                .map(|((expert, step), status)| json!({"step": step, "expert": expert, "status": status}))
                .collect(),
        )
    };
    let mut ev = vec![
        json!({"type": "team_formed", "team_id": team, "goal": text, "experts": ["researcher", "writer"]}),
        json!({"type": "plan_update", "team_id": team, "plan": plan(["pending", "pending"])}),
    ];
    let mut statuses = ["pending", "pending"];
    for (i, (expert, _)) in EXPERTS.iter().enumerate() {
        statuses[i] = "running";
        ev.push(json!({"type": "plan_update", "team_id": team, "plan": plan(statuses)}));
        ev.push(
            json!({"type": "expert_step", "team_id": team, "expert": expert,
            "content": format!("{expert} working on: {text}")}),
        );
        ev.push(json!({"type": "expert_result", "team_id": team, "expert": expert, "result": format!("{expert} done")}));
        statuses[i] = "done";
        ev.push(json!({"type": "plan_update", "team_id": team, "plan": plan(statuses)}));
    }
    ev.push(json!({"type": "team_synthesis", "team_id": team, "content": "researcher and writer agree"}));
    ev.push(json!({"type": "team_dissolved", "team_id": team}));
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(s: &Script) -> Vec<String> {
        s.actions
            .iter()
            .map(|a| match a {
                Action::Emit(v) => v["type"].as_str().unwrap().to_owned(),
                Action::Confirm { .. } => "CONFIRM".into(),
                Action::AskHuman { .. } => "ASK".into(),
                Action::Fail { .. } => "FAIL".into(),
                Action::Answer(_) => "ANSWER".into(),
            })
            .collect()
    }

    fn answer(s: &Script, r: &Replies) -> String {
        match s.actions.last().unwrap() {
            Action::Answer(a) => a.render(r),
            other => panic!("last action is {other:?}"),
        }
    }

    #[test]
    fn plain_message() {
        let s = script("  hello   world ", &[]);
        assert_eq!(s.text, "hello world");
        assert_eq!(types(&s), ["thinking", "ANSWER"]);
        assert_eq!(answer(&s, &Replies::default()), "You said: hello world");
        match &s.actions[0] {
            Action::Emit(v) => assert_eq!(v["content"], "Thinking about: hello world"),
            _ => unreachable!(),
        }
    }

    #[test]
    fn tool_and_failtool_use_distinct_call_ids_and_suffixes() {
        let s = script("#failtool do it #tool", &[]);
        assert_eq!(
            types(&s),
            [
                "thinking",
                "tool_call",
                "tool_result",
                "step",
                "tool_call",
                "tool_result",
                "step",
                "ANSWER"
            ]
        );
        let Action::Emit(first) = &s.actions[1] else {
            unreachable!()
        };
        assert_eq!(first["call_id"], "call-1");
        assert_eq!(first["name"], "fail");
        let Action::Emit(echo) = &s.actions[4] else {
            unreachable!()
        };
        assert_eq!(echo["call_id"], "call-2");
        assert_eq!(echo["arguments"], json!({"text": "do it"}));
        assert_eq!(
            answer(&s, &Replies::default()),
            "You said: do it [tool failed] [tool: do it]"
        );
    }

    #[test]
    fn repeated_directive_runs_once() {
        let s = script("#tool #tool x", &[]);
        assert_eq!(types(&s).iter().filter(|t| *t == "tool_call").count(), 1);
    }

    #[test]
    fn confirm_and_ask_depend_on_replies() {
        let s = script("go #confirm #ask", &[]);
        assert_eq!(types(&s), ["thinking", "CONFIRM", "ASK", "ANSWER"]);
        let r = Replies {
            approved: Some(true),
            human: Some("Ada".into()),
        };
        assert_eq!(answer(&s, &r), "You said: go [confirmed] [human: Ada]");
        let r = Replies {
            approved: Some(false),
            human: Some("".into()),
        };
        assert_eq!(answer(&s, &r), "You said: go [denied] [human: ]");
        let Action::Confirm {
            on_approve, tool, ..
        } = &s.actions[1]
        else {
            unreachable!()
        };
        assert_eq!(tool, "delete_file");
        assert_eq!(on_approve[0]["name"], "delete_file");
        assert_eq!(on_approve[1]["output"], json!({"deleted": true}));
    }

    #[test]
    fn team_flow_follows_the_lifecycle() {
        let s = script("#team plan it", &[]);
        let t = types(&s);
        assert_eq!(t.first().unwrap(), "thinking");
        assert_eq!(
            &t[1..t.len() - 1],
            [
                "team_formed",
                "plan_update",
                "plan_update",
                "expert_step",
                "expert_result",
                "plan_update",
                "plan_update",
                "expert_step",
                "expert_result",
                "plan_update",
                "team_synthesis",
                "team_dissolved"
            ]
        );
        let Action::Emit(last_plan) = &s.actions[10] else {
            unreachable!()
        };
        assert_eq!(last_plan["plan"][0]["status"], "done");
        assert_eq!(last_plan["plan"][1]["status"], "done");
        assert_eq!(
            answer(&s, &Replies::default()),
            "You said: plan it [team: researcher and writer agree]"
        );
    }

    #[test]
    fn error_stops_the_script_where_it_appears() {
        let s = script("#tool #error #team x", &[]);
        assert_eq!(
            types(&s),
            [
                "thinking",
                "step",
                "tool_call",
                "tool_result",
                "step",
                "FAIL"
            ]
        );
    }

    #[test]
    fn skills_match_case_insensitively_once_each_in_registration_order() {
        let skills = vec![
            Skill {
                name: "weather".into(),
                keywords: vec!["rain".into(), "SUN".into()],
                description: None,
            },
            Skill {
                name: "none".into(),
                keywords: vec!["zzz".into()],
                description: None,
            },
            Skill {
                name: "greet".into(),
                keywords: vec!["hello".into()],
                description: None,
            },
        ];
        let s = script("Hello sun and RAIN #tool", &skills);
        assert_eq!(types(&s)[..3], ["thinking", "skill_match", "skill_match"]);
        let Action::Emit(m) = &s.actions[1] else {
            unreachable!()
        };
        assert_eq!(
            (m["skill"].as_str(), m["keyword"].as_str()),
            (Some("weather"), Some("rain"))
        );
        assert_eq!(
            answer(&s, &Replies::default()),
            "You said: Hello sun and RAIN [tool: Hello sun and RAIN] [skill: weather] [skill: greet]"
        );
    }

    #[test]
    fn long_and_pace_directives() {
        let s = script("x #long=3 #pace=7", &[]);
        assert_eq!(s.pace, Some(Duration::from_millis(7)));
        assert_eq!(answer(&s, &Replies::default()), "w0 w1 w2");
        assert_eq!(
            script("#pace=999999", &[]).pace,
            Some(Duration::from_millis(MAX_PACE_MS))
        );
        assert_eq!(script("#long=abc hi", &[]).text, "hi");
        assert_eq!(answer(&script("#long=0", &[]), &Replies::default()), "");
        assert_eq!(long_word(0), "w0");
        assert_eq!(long_word(12), " w12");
    }

    #[test]
    fn tokens_split_before_spaces_and_concatenate() {
        assert_eq!(split_tokens("You said: hi"), ["You", " said:", " hi"]);
        assert_eq!(split_tokens("a  b "), ["a", " ", " b", " "]);
        assert!(split_tokens("").is_empty());
        let a = "You said:  x [human: a  b]";
        assert_eq!(split_tokens(a).concat(), a);
    }
}
