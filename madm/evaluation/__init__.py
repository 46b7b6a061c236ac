from . import metrics  # noqa: F401
from .results_table import format_markdown_table, results_row, write_results_table

__all__ = ['format_markdown_table', 'results_row', 'write_results_table']
