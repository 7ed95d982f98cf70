"""The services we advertise at `GET /cds-services`, with their prefetch templates.

Prefetch asks for everything the rules read, so a well-behaved EHR sends it
all and we never call back; what it leaves out we fetch (service/fhir).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREFETCH: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active,completed,stopped,on-hold&_count=200",
    "conditions": "Condition?patient={{context.patientId}}&_count=200",
    "procedures": "Procedure?patient={{context.patientId}}&_count=200",
    "observations": "Observation?patient={{context.patientId}}&category=laboratory&_count=200",
    "bodyMeasures": "Observation?patient={{context.patientId}}&code=http://loinc.org|8302-2,http://loinc.org|29463-7&_sort=-date&_count=10",
    "coverage": "Coverage?patient={{context.patientId}}&status=active",
}

#: Without these the advice could be wrong (e.g. "no genotype on file" when the lab
#: results simply did not arrive), so failing to get them is a 412.
REQUIRED: frozenset[str] = frozenset({"patient", "medications", "conditions", "procedures", "observations"})

USAGE = (
    "Send order-select when a drug or test is chosen and order-sign before signing. "
    "Fill every prefetch key (laboratory Observations must include genomic results, "
    "LOINC 84413-4 / 69548-6); keys you cannot fill are fetched from fhirServer with "
    "fhirAuthorization, which needs patient/*.read scopes for the resources above."
)


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str

    def discovery(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(PREFETCH),
            "usageRequirements": USAGE,
        }


SERVICES: dict[str, ServiceDefinition] = {
    s.id: s
    for s in (
        ServiceDefinition(
            "precision-cds-order-select",
            "order-select",
            "Precision medicine check on order selection",
            "Checks a selected drug or test against the patient's genotype, companion-diagnostic "
            "results and insurance formulary, and proposes the required test, a genotype-guided "
            "alternative or dose, or an in-formulary alternative.",
        ),
        ServiceDefinition(
            "precision-cds-order-sign",
            "order-sign",
            "Precision medicine check before signing",
            "Before orders are signed: missing companion diagnostics, pharmacogenomic "
            "contraindications and dosing (CPIC), and formulary or reimbursement problems, "
            "each with one-click fixes.",
        ),
    )
}
