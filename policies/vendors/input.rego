# METADATA
# title: The vendors area's input type
# description: >-
#   Every rule under keyguard.vendors reads input as schemas/vendors.schema.json describes it: `opa check
#   --schema schemas` (run by keyguard policy test and on every load) fails a rule that reads a field
#   the schema does not have.
# scope: subpackages
# schemas:
#   - input: schema["vendors.schema"]
package keyguard.vendors

import rego.v1
