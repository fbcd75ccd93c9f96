"""torch.hub entry points: ``torch.hub.load(<this folder>, "speechbrain_ext_ssl", <run folder>,
source="local")`` gives :class:`speechbrain_ext.superb.s3prl_upstream.SSLUpstreamExpert`.
s3prl's upstream hubconf files have the same form (see that module's docstring).
"""

from speechbrain_ext.superb.s3prl_upstream import speechbrain_ext_ssl

dependencies = ["torch", "speechbrain"]
__all__ = ["speechbrain_ext_ssl"]
