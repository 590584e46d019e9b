"""Imports every domain's tables so the metadata is complete (for Alembic and tests)."""

from fideliza.apikeys import models as _apikeys  # noqa: F401
from fideliza.cases import models as _cases  # noqa: F401
from fideliza.coupons import models as _coupons  # noqa: F401
from fideliza.db import Base
from fideliza.events import models as _events  # noqa: F401
from fideliza.giftcards import models as _giftcards  # noqa: F401
from fideliza.ledger import models as _ledger  # noqa: F401
from fideliza.lifecycle import models as _lifecycle  # noqa: F401
from fideliza.members import models as _members  # noqa: F401
from fideliza.messaging import models as _messaging  # noqa: F401
from fideliza.programs import models as _programs  # noqa: F401
from fideliza.purchases import models as _purchases  # noqa: F401
from fideliza.ratelimits import models as _ratelimits  # noqa: F401
from fideliza.referrals import models as _referrals  # noqa: F401
from fideliza.rewards import models as _rewards  # noqa: F401
from fideliza.rules import models as _rules  # noqa: F401
from fideliza.surveys import models as _surveys  # noqa: F401
from fideliza.tiers import models as _tiers  # noqa: F401
from fideliza.webhooks import models as _webhooks  # noqa: F401

metadata = Base.metadata
