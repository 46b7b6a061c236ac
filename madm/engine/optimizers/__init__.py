from .merged_param_groups_constructor import (Layout, MergedParamGroupsOptimWrapperConstructor,
                                              keep_unmerged_state_dict_layout,
                                              merge_param_groups, unmerged_layout)

__all__ = ['Layout', 'MergedParamGroupsOptimWrapperConstructor',
           'keep_unmerged_state_dict_layout', 'merge_param_groups', 'unmerged_layout']
