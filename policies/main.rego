# METADATA
# title: Keyguard's single entry point
# description: >-
#   data.keyguard.main.findings is the one query the engine makes: every deny result of every
#   package directly under data.keyguard[input.kind] (one package per concern).
package keyguard.main

import rego.v1

# METADATA
# title: The input kinds Keyguard has rule areas for
kinds := {"keys", "execution", "infra", "vendors"}

# METADATA
# title: Every deny result of the input kind's area
# entrypoint: true
# description: >-
#   Defined (possibly empty) for every known kind, so an area without findings is an empty set and
#   never undefined; undefined for an unknown kind, which the engine reports as an error.
findings := area_findings[input.kind] if input.kind in kinds

# One rule per area, with the area named literally: a computed data.keyguard[kind] would include this
# package itself, and only the requested area is evaluated.
area_findings["keys"] := {result | some result in data.keyguard.keys[_].deny}

area_findings["execution"] := {result | some result in data.keyguard.execution[_].deny}

area_findings["infra"] := {result | some result in data.keyguard.infra[_].deny}

area_findings["vendors"] := {result | some result in data.keyguard.vendors[_].deny}
