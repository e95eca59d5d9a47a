# METADATA
# title: The execution area's input type
# description: >-
#   Every rule under keyguard.execution reads input as schemas/execution.schema.json describes it: `opa check
#   --schema schemas` (run by keyguard policy test and on every load) fails a rule that reads a field
#   the schema does not have.
# scope: subpackages
# schemas:
#   - input: schema["execution.schema"]
package keyguard.execution

import rego.v1
