"""Data: tokenizers, datasets and generated algorithmic tasks."""

from keras_attention.data.algorithmic_tasks import TASKS
from keras_attention.data.algorithmic_tasks import algorithmic_task
from keras_attention.data.algorithmic_tasks import associative_recall_task
from keras_attention.data.algorithmic_tasks import copy_task
from keras_attention.data.algorithmic_tasks import priority_sort_task
from keras_attention.data.algorithmic_tasks import repeat_copy_task
from keras_attention.data.character_tokenizer import CharacterTokenizer
from keras_attention.data.character_tokenizer import build_character_vocabulary
from keras_attention.data.tokenizers import RESERVED_TOKENS
from keras_attention.data.tokenizers import check_vocabulary
from keras_attention.data.tokenizers import fit_tokenizer
from keras_attention.data.text_corpus import STDLIB_FAMILIES
from keras_attention.data.text_corpus import Docstring
from keras_attention.data.text_corpus import class_counts
from keras_attention.data.text_corpus import docstring_classification_data
from keras_attention.data.text_corpus import docstring_text
from keras_attention.data.text_corpus import make_classification_dataset
from keras_attention.data.text_corpus import make_language_model_dataset
from keras_attention.data.text_corpus import make_masked_lm_dataset
from keras_attention.data.text_corpus import mask_tokens
from keras_attention.data.text_corpus import stdlib_docstrings
from keras_attention.data.text_corpus import token_stream
from keras_attention.data.tfds_datasets import IMDB_LABEL_NAMES
from keras_attention.data.tfds_datasets import load_imdb_reviews
from keras_attention.data.tfds_datasets import load_ted_hrlr_pt_en
from keras_attention.data.tfds_datasets import load_tiny_shakespeare
from keras_attention.data.tfds_datasets import tfds_translation_pairs
from keras_attention.data.translation import TranslationData
from keras_attention.data.translation import date_in_words
from keras_attention.data.translation import date_translation_task
from keras_attention.data.translation import load_translation_tsv
from keras_attention.data.translation import make_translation_dataset
from keras_attention.data.translation import prepare_translation_data
from keras_attention.data.translation import translation_pairs
from keras_attention.data.translation import translation_tokenizers
from keras_attention.data.translation import year_in_words
from keras_attention.data.user_data import load_text_classification_csv
from keras_attention.data.user_data import load_text_classification_directory
from keras_attention.data.user_data import load_text_files
from keras_attention.data.user_data import split_examples
from keras_attention.data.wordpiece_tokenizer import WordPieceTokenizer
from keras_attention.data.wordpiece_tokenizer import build_wordpiece_vocabulary
from keras_attention.data.wordpiece_tokenizer import split_words

__all__ = [
    "TASKS",
    "algorithmic_task",
    "associative_recall_task",
    "copy_task",
    "priority_sort_task",
    "repeat_copy_task",
    "CharacterTokenizer",
    "RESERVED_TOKENS",
    "WordPieceTokenizer",
    "build_character_vocabulary",
    "build_wordpiece_vocabulary",
    "check_vocabulary",
    "fit_tokenizer",
    "STDLIB_FAMILIES",
    "Docstring",
    "class_counts",
    "docstring_classification_data",
    "docstring_text",
    "make_classification_dataset",
    "make_language_model_dataset",
    "make_masked_lm_dataset",
    "mask_tokens",
    "stdlib_docstrings",
    "token_stream",
    "IMDB_LABEL_NAMES",
    "load_imdb_reviews",
    "load_ted_hrlr_pt_en",
    "load_tiny_shakespeare",
    "tfds_translation_pairs",
    "TranslationData",
    "date_in_words",
    "date_translation_task",
    "load_translation_tsv",
    "make_translation_dataset",
    "prepare_translation_data",
    "translation_pairs",
    "translation_tokenizers",
    "year_in_words",
    "load_text_classification_csv",
    "load_text_classification_directory",
    "load_text_files",
    "split_examples",
    "split_words",
]
