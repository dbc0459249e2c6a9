//! Building llguidance's parser factory once per model, and compiling specs with it.

use std::sync::Arc;

use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::toktrie::TokEnv;
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};

use super::token_env::ModelTokEnv;
use super::{Constraint, ConstraintError, ConstraintSpec};
use crate::engine::tokenizer::Tokenizer;

/// Compiles [`ConstraintSpec`]s for one model. Building it walks the whole vocabulary
/// (tens of milliseconds); build one per model and share it.
pub struct ConstraintCompiler {
    factory: ParserFactory,
}

impl std::fmt::Debug for ConstraintCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintCompiler")
            .field("vocab", &self.factory.tok_env().tok_trie().vocab_size())
            .finish_non_exhaustive()
    }
}

impl ConstraintCompiler {
    /// The compiler for the model whose tokenizer is `tokenizer`.
    pub fn new(tokenizer: Arc<Tokenizer>) -> Result<Self, ConstraintError> {
        let env: TokEnv = Arc::new(ModelTokEnv::new(tokenizer)?);
        // Default capabilities: no forced tokens, no backtracking (the engine commits
        // exactly the tokens it samples).
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| {
            ConstraintError::new(format!("cannot prepare constrained decoding: {e}"))
        })?;
        // Errors reach clients and logs as one line: no parser dump, nothing on stderr.
        *factory.limits_mut() = ParserLimits {
            verbose_errors: false,
            ..ParserLimits::default()
        };
        factory.quiet();
        Ok(ConstraintCompiler { factory })
    }

    /// Tokens in the vocabulary the masks cover.
    pub fn vocab_size(&self) -> usize {
        self.factory.tok_env().tok_trie().vocab_size()
    }

    /// Compiles `spec` into a constraint ready for one sequence. A schema using anything
    /// llguidance does not implement is an error naming it.
    pub fn compile(&self, spec: &ConstraintSpec) -> Result<Constraint, ConstraintError> {
        let grammar = match spec {
            ConstraintSpec::JsonObject => json_grammar(serde_json::json!({ "type": "object" }))?,
            ConstraintSpec::JsonSchema { schema } => json_grammar(schema.clone())?,
            ConstraintSpec::Tagged {
                open,
                schema,
                close,
                separator,
            } => {
                let mut schema = schema.clone();
                if !schema.is_object() {
                    return Err(ConstraintError::new(
                        "the JSON schema must be a JSON object",
                    ));
                }
                json_options().apply_to(&mut schema);
                // Lark string literals read JSON string escapes.
                let literal = |s: &str| serde_json::Value::from(s).to_string();
                let start = match separator {
                    None => "start: item".to_string(),
                    Some(sep) => format!("start: item ({} item)*", literal(sep)),
                };
                TopLevelGrammar::from_lark(format!(
                    "{start}\nitem: {} %json {schema} {}\n",
                    literal(open),
                    literal(close)
                ))
            }
        };
        let parser = self.factory.create_parser(grammar).map_err(|e| {
            ConstraintError::new(format!(
                "the JSON schema cannot be used: {}",
                for_client(&e)
            ))
        })?;
        let mut matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(ConstraintError::new(format!(
                "the JSON schema cannot be used: {e}"
            )));
        }
        // Non-lenient compilation warns of nothing it then ignores; refuse if it ever does.
        if let Some(warning) = matcher.grammar_warnings().first() {
            return Err(ConstraintError::new(format!(
                "the JSON schema cannot be used exactly: {warning}"
            )));
        }
        Ok(Constraint::new(matcher))
    }
}

/// The grammar of one JSON value valid under `schema` (an object), in our layout.
fn json_grammar(mut schema: serde_json::Value) -> Result<TopLevelGrammar, ConstraintError> {
    if !schema.is_object() {
        return Err(ConstraintError::new(
            "the JSON schema must be a JSON object",
        ));
    }
    // Our options, whatever `x-guidance` the schema carried.
    json_options().apply_to(&mut schema);
    Ok(TopLevelGrammar::from_json_schema(schema))
}

/// llguidance's message, less advice about its own options (which clients cannot set).
fn for_client(error: &impl std::fmt::Display) -> String {
    let message = error.to_string();
    match message.find(". Enable 'coerce_one_of'") {
        Some(at) => format!(
            "{} where its branches may overlap (use anyOf)",
            &message[..at]
        ),
        None => message,
    }
}

/// How JSON is compiled: strict (`lenient: false`, `oneOf` refused rather than read as
/// `anyOf`) and laid out as `{"a": 1, "b": [2, 3]}`.
fn json_options() -> JsonCompileOptions {
    JsonCompileOptions {
        item_separator: ", ".into(),
        key_separator: ": ".into(),
        whitespace_flexible: false,
        whitespace_pattern: None,
        coerce_one_of: false,
        lenient: false,
        ..JsonCompileOptions::default()
    }
}
