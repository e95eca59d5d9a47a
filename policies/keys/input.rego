# METADATA
# title: The keys area's input type
# description: >-
#   Every rule under keyguard.keys reads input as schemas/keys.schema.json describes it: `opa check
#   --schema schemas` (run by keyguard policy test and on every load) fails a rule that reads a field
#   the schema does not have.
# scope: subpackages
# schemas:
#   - input: schema["keys.schema"]
package keyguard.keys

import rego.v1
