from .merged_param_groups_constructor import (MergedParamGroupsOptimWrapperConstructor,
                                              keep_unmerged_state_dict_layout,
                                              merge_param_groups)

__all__ = ['MergedParamGroupsOptimWrapperConstructor', 'keep_unmerged_state_dict_layout',
           'merge_param_groups']
