//! Words of catalog text in Chinese and English, as the index and the queries see them.
//!
//! Chinese has no spaces, so words come from jieba-rs (dictionary + HMM for unknown words);
//! the same pass splits Latin words and numbers. Products are indexed in jieba's search mode,
//! which adds the shorter words inside long ones (`蓝牙耳机` also yields `蓝牙` and `耳机`), so a
//! shopper finds a product by any part of its name; queries are cut in the default mode (the
//! longest words), and `crate::catalog::index` accepts either the word or all of its parts.
//! Latin words are then lower-cased, English stop words dropped and stemmed (`headphones` and
//! `headphone` meet), so typo tolerance (fuzzy matching) works on stems.
//!
//! The dictionary is loaded once per process and shared ([`segmenter`]). jieba's default one
//! (349,000 words) costs 33 MB of RSS (measured, release build), more than the service's whole
//! budget, so this one is trimmed: the 36,000 words of jieba's dictionary with a frequency of
//! at least 100 (`dict/common.txt`), plus the shopping words and brands a catalog needs that
//! the general dictionary lacks or ranks low (`dict/commerce.txt`). Words outside it are still
//! segmented by jieba's HMM. The judged query set (`tests/search`) is the check that the trim
//! costs no ranking quality.

use std::sync::{Arc, LazyLock};

use jieba_rs::{Jieba, TokenizeMode};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, StopWordFilter, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};

/// Name of the analyzer registered with the index (search mode, for documents).
pub const INDEX_ANALYZER: &str = "catalog";

/// Words longer than this (bytes) are noise such as pasted hashes, not shoppers' words.
const MAX_WORD_BYTES: usize = 60;

/// The general words, from jieba's dictionary (MIT), trimmed to frequency >= 100.
const COMMON_WORDS: &str = include_str!("dict/common.txt");
/// Shopping words and brand names, kept by hand.
const COMMERCE_WORDS: &str = include_str!("dict/commerce.txt");

/// The shared segmenter.
pub fn segmenter() -> Arc<Jieba> {
    static JIEBA: LazyLock<Arc<Jieba>> = LazyLock::new(|| {
        let mut jieba = Jieba::empty();
        for words in [COMMON_WORDS, COMMERCE_WORDS] {
            // Both files are part of this binary and checked by the tests: a failure here is a
            // build defect, and the segmenter then knows fewer words (the HMM still cuts).
            if let Err(error) = jieba.load_dict(&mut words.as_bytes()) {
                tracing::error!(%error, "a built-in dictionary did not load");
            }
        }
        Arc::new(jieba)
    });
    JIEBA.clone()
}

/// Splits text into words with jieba; punctuation, spaces and symbols are dropped.
#[derive(Clone)]
pub struct JiebaTokenizer {
    jieba: Arc<Jieba>,
    mode: TokenizeMode,
    tokens: Vec<Token>,
}

impl JiebaTokenizer {
    pub fn new(mode: TokenizeMode) -> Self {
        Self {
            jieba: segmenter(),
            mode,
            tokens: Vec::new(),
        }
    }
}

/// The words of one text, handed out one by one.
pub struct JiebaTokenStream<'a> {
    tokens: &'a [Token],
    index: usize,
    current: Token,
}

impl Tokenizer for JiebaTokenizer {
    type TokenStream<'a> = JiebaTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JiebaTokenStream<'a> {
        self.tokens.clear();
        let mut position = 0;
        for word in self.jieba.tokenize(text, self.mode, true) {
            if !word.word.chars().any(char::is_alphanumeric) {
                continue;
            }
            self.tokens.push(Token {
                offset_from: word.byte_start,
                offset_to: word.byte_end,
                position,
                text: word.word.to_owned(),
                position_length: 1,
            });
            position += 1;
        }
        JiebaTokenStream {
            tokens: &self.tokens,
            index: 0,
            current: Token::default(),
        }
    }
}

impl TokenStream for JiebaTokenStream<'_> {
    fn advance(&mut self) -> bool {
        match self.tokens.get(self.index) {
            Some(token) => {
                self.current = token.clone();
                self.index += 1;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

/// jieba, then lower case, English stop words and stems, in `mode`.
pub fn analyzer(mode: TokenizeMode) -> TextAnalyzer {
    let builder = TextAnalyzer::builder(JiebaTokenizer::new(mode))
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser);
    match StopWordFilter::new(Language::English) {
        Some(stop_words) => builder
            .filter(stop_words)
            .filter(Stemmer::new(Language::English))
            .build(),
        None => builder.filter(Stemmer::new(Language::English)).build(),
    }
}

/// The analysed words of `text` in `mode`, in order.
pub fn words(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut words = Vec::new();
    while stream.advance() {
        words.push(stream.token().text.clone());
    }
    words
}

/// Whether `word` is written in Latin letters (and digits): the words typo tolerance applies to.
pub fn is_latin(word: &str) -> bool {
    word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_is_segmented_and_search_mode_adds_the_parts() {
        let mut index = analyzer(TokenizeMode::Search);
        let found = words(&mut index, "索尼无线蓝牙耳机");
        for expected in ["索尼", "蓝牙", "耳机"] {
            assert!(
                found.iter().any(|w| w == expected),
                "{expected} in {found:?}"
            );
        }
    }

    #[test]
    fn the_built_in_dictionaries_load_and_know_shopping_words() {
        let jieba = segmenter();
        for word in ["蓝牙耳机", "机械键盘", "扫地机器人", "索尼", "电脑", "手机"]
        {
            assert!(jieba.has_word(word), "{word}");
        }
        let mut query = analyzer(TokenizeMode::Default);
        assert_eq!(words(&mut query, "小米蓝牙耳机"), ["小米", "蓝牙耳机"]);
    }

    #[test]
    fn english_is_lower_cased_stemmed_and_stop_words_dropped() {
        let mut query = analyzer(TokenizeMode::Default);
        assert_eq!(
            words(&mut query, "Wireless Headphones for the Gym!"),
            ["wireless", "headphon", "gym"]
        );
    }

    #[test]
    fn mixed_text_punctuation_and_emoji() {
        let mut query = analyzer(TokenizeMode::Default);
        assert_eq!(words(&mut query, "Sony 耳机"), ["soni", "耳机"]);
        assert!(words(&mut query, "?!…。，😀").is_empty());
    }
}
