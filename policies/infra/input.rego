# METADATA
# title: The infra area's input type
# description: >-
#   Every rule under keyguard.infra reads input as schemas/infra.schema.json describes it: `opa check
#   --schema schemas` (run by keyguard policy test and on every load) fails a rule that reads a field
#   the schema does not have.
# scope: subpackages
# schemas:
#   - input: schema["infra.schema"]
package keyguard.infra

import rego.v1
