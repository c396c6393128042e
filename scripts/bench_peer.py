"""The peer chute replaces: what the usual pandas Lambda does with a products CSV.

pandas.read_csv, then per row the same rules chute applies (required cells, sku charset and length,
price as a 2-decimal non-negative number, stock range, currency, tags, dates, booleans) and a dict
document per valid row. Prints {"python_peer_rows_per_s": …, "rows": …, "valid": …} as JSON.
"""

import json
import re
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

import pandas as pd

SKU = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PRICE = re.compile(r"^-?\d+(\.\d+)?$")
TRUE, FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


def document(row):
    errors, doc = [], {}
    sku = str(row["sku"]).strip() if pd.notna(row["sku"]) else ""
    if not sku:
        errors.append("sku missing")
    elif not SKU.match(sku):
        errors.append("sku constraint")
    doc["sku"] = sku
    name = str(row["name"]).strip() if pd.notna(row["name"]) else ""
    if not name or len(name) > 200:
        errors.append("name")
    doc["name"] = name
    if pd.notna(row.get("description")):
        doc["description"] = str(row["description"]).strip()
    price = str(row["price"]).strip() if pd.notna(row["price"]) else ""
    if not PRICE.match(price):
        errors.append("price type")
    else:
        try:
            value = Decimal(price)
            if value < 0 or -value.as_tuple().exponent > 2:
                errors.append("price constraint")
            doc["price"] = value
        except InvalidOperation:
            errors.append("price type")
    currency = str(row["currency"]).strip() if pd.notna(row.get("currency")) else "USD"
    if len(currency) != 3 or not currency.isalpha():
        errors.append("currency")
    doc["currency"] = currency.upper()
    try:
        stock = int(str(row["stock"]).strip())
        if not 0 <= stock <= 2**31 - 1:
            errors.append("stock range")
        doc["stock"] = stock
    except ValueError:
        errors.append("stock type")
    category = str(row["category"]).strip() if pd.notna(row["category"]) else ""
    if not category or len(category) > 100:
        errors.append("category")
    doc["category"] = category
    attributes = {k: str(row[k]).strip() for k in ("brand", "color") if pd.notna(row.get(k))}
    if attributes:
        doc["attributes"] = attributes
    if pd.notna(row.get("tags")):
        tags = []
        for t in str(row["tags"]).split("|"):
            t = t.strip()
            if t and t not in tags:
                tags.append(t)
        doc["tags"] = tags
    if pd.notna(row.get("created_at")):
        text = str(row["created_at"]).strip()
        try:
            doc["created_at"] = datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=timezone.utc)
        except ValueError:
            errors.append("created_at")
    active = str(row["active"]).strip().lower() if pd.notna(row.get("active")) else "true"
    if active not in TRUE | FALSE:
        errors.append("active")
    doc["active"] = active in TRUE
    return doc, errors


def main():
    path, limit = sys.argv[1], int(sys.argv[2])
    start = time.perf_counter()
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], nrows=limit)
    valid = 0
    for row in frame.to_dict("records"):
        _, errors = document(row)
        valid += not errors
    elapsed = time.perf_counter() - start
    print(json.dumps({"python_peer_rows_per_s": len(frame) / elapsed, "python_peer_rows": len(frame), "python_peer_valid": valid}))


if __name__ == "__main__":
    main()
