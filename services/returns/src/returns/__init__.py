"""Returns: return authorisations with eligibility rules, receipt, restock, refunds and exchanges as a saga"""
