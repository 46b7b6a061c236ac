from . import metrics  # noqa: F401
from .image_names import relative_image_name
from .results_table import (RESULTS_TABLE_EXTENSIONS, check_results_table_path,
                            format_markdown_table, results_row, write_results_table)

__all__ = ['RESULTS_TABLE_EXTENSIONS', 'check_results_table_path', 'format_markdown_table',
           'relative_image_name', 'results_row', 'write_results_table']
