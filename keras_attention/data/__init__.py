"""Data: tokenizers, datasets and generated algorithmic tasks."""

from keras_attention.data.character_tokenizer import CharacterTokenizer
from keras_attention.data.character_tokenizer import build_character_vocabulary
from keras_attention.data.tokenizers import RESERVED_TOKENS
from keras_attention.data.tokenizers import check_vocabulary
from keras_attention.data.wordpiece_tokenizer import WordPieceTokenizer
from keras_attention.data.wordpiece_tokenizer import build_wordpiece_vocabulary
from keras_attention.data.wordpiece_tokenizer import split_words

__all__ = [
    "CharacterTokenizer",
    "RESERVED_TOKENS",
    "WordPieceTokenizer",
    "build_character_vocabulary",
    "build_wordpiece_vocabulary",
    "check_vocabulary",
    "split_words",
]
