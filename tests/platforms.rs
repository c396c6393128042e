//! Platform exports end to end through the local stack with the shipped schemas: Shopify's
//! product CSV (variant rows, image-only continuation rows, an Excel-damaged barcode) and
//! WooCommerce's (variable products without a price, variations naming their parent, `.5`
//! weights). Fixtures: samples/platforms/, their SKUs made unique per run.

#[path = "support/run.rs"]
mod run;
mod support;

use bson::{Bson, Document};

use run::{documents_in, errors, n, rows, Run};
use support::{root, unique};

/// Runs `samples/platforms/<file>` with `schema`, its `SKU-` prefix (SKUs and Woo's parent SKU)
/// replaced by `prefix`, after `edit`.
fn run_sample(file: &str, schema: &str, prefix: &str, edit: impl Fn(String) -> String) -> Run {
    let text = std::fs::read_to_string(root().join("samples/platforms").join(file)).unwrap();
    let text = edit(text.replace("SKU-", &format!("{prefix}-")));
    run::run_local(file, text, &["--schema", schema])
}

fn decimal(text: &str) -> Bson {
    Bson::Decimal128(text.parse().unwrap())
}

fn by_sku<'d>(docs: &'d [Document], sku: &str) -> &'d Document {
    docs.iter()
        .find(|d| d.get_str("sku") == Ok(sku))
        .unwrap_or_else(|| panic!("{sku} stored: {docs:?}"))
}

#[tokio::test]
async fn a_shopify_export_skips_its_image_rows_and_rejects_an_excel_damaged_barcode() {
    let p = unique("SH");
    let run = run_sample("shopify_products.csv", "shopify", &p, |t| t);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "SUCCEEDED", "{}", run.report);
    assert_eq!(rows(&run.report), (3, 0));
    assert_eq!(n(&run.report, "/rows/skipped"), 3);
    assert_eq!(n(&run.report, "/rows/duplicate"), 0);
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains("3 continuation rows skipped (an image of the product above)"),
        "{warnings}"
    );
    let email = std::fs::read_to_string(run.out.join("email.html")).unwrap();
    assert!(
        email.contains(">skipped<"),
        "the email counts them: {email}"
    );
    let docs = documents_in("products", &p).await;
    assert_eq!(docs.len(), 3, "image rows are never imported: {docs:?}");
    let xs = by_sku(&docs, &format!("{p}-OBS-XS"));
    assert_eq!(xs.get_str("handle").unwrap(), "ocean-blue-shirt");
    assert_eq!(xs.get_str("barcode").unwrap(), "00036000291452");
    assert_eq!(xs.get("price"), Some(&decimal("50")));
    assert_eq!(xs.get("cost"), Some(&decimal("25.5")));
    assert!(xs.get_bool("published").unwrap());
    let s = by_sku(&docs, &format!("{p}-OBS-S"));
    assert_eq!(s.get_str("handle").unwrap(), "ocean-blue-shirt");
    assert_eq!(
        s.get_i32("stock").unwrap(),
        -2,
        "Shopify stock may be negative"
    );
    assert!(
        s.get("title").is_none(),
        "variant rows leave the title blank"
    );
    let top = by_sku(&docs, &format!("{p}-CVT-XS"));
    assert_eq!(top.get_str("barcode").unwrap(), "04006381333931");
    assert_eq!(top.get("price"), Some(&decimal("17.99")));
    assert_eq!(top.get("grams"), Some(&decimal("60.5")));
    let tags: Vec<&str> = top
        .get_array("tags")
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["women", "Sweaters"]);

    // The same export after a save in Excel: one barcode in scientific notation.
    let q = unique("SX");
    let run = run_sample("shopify_products.csv", "shopify", &q, |t| {
        t.replace("036000291469", "3.65275E+11")
    });
    assert_eq!(run.report["status"], "PARTIAL", "{}", run.report);
    assert_eq!(rows(&run.report), (2, 1));
    assert_eq!(n(&run.report, "/rows/skipped"), 3);
    assert_eq!(
        errors(&run.report),
        [(2, 3, "Variant Barcode", "spreadsheet_error")]
    );
    let error = &run.report["errors"][0];
    assert_eq!(error["value"], "3.65275E+11", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Variant Barcode ") && message.contains("format the column as text"),
        "{message}"
    );
    let stored = documents_in("products", &q).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    let damaged = format!("{q}-OBS-S");
    assert!(stored
        .iter()
        .all(|d| d.get_str("sku") != Ok(damaged.as_str())));
}

#[tokio::test]
async fn a_woocommerce_export_with_variable_products_and_variations_succeeds() {
    let p = unique("WO");
    let run = run_sample("woocommerce_products.csv", "woocommerce", &p, |t| t);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "SUCCEEDED", "{}", run.report);
    assert_eq!(rows(&run.report), (4, 0));
    assert!(
        run.report["rows"].get("skipped").is_none(),
        "{}",
        run.report
    );
    let docs = documents_in("products", &p).await;
    let parent = by_sku(&docs, &format!("{p}-woo-vneck-tee"));
    assert!(
        parent.get("price").is_none(),
        "a variable product has no price"
    );
    assert_eq!(parent.get("weight"), Some(&decimal("0.5")));
    assert_eq!(parent.get_str("type").unwrap(), "variable");
    let red = by_sku(&docs, &format!("{p}-woo-vneck-tee-red"));
    assert_eq!(red.get_str("parent").unwrap(), "id:15");
    assert_eq!(red.get("price"), Some(&decimal("20")));
    let green = by_sku(&docs, &format!("{p}-woo-vneck-tee-green"));
    assert_eq!(
        green.get_str("parent").unwrap(),
        format!("{p}-woo-vneck-tee")
    );
    assert_eq!(green.get("sale_price"), Some(&decimal("18")));
    assert_eq!(green.get("weight"), Some(&decimal("0.8")));
    let beanie = by_sku(&docs, &format!("{p}-woo-beanie"));
    assert_eq!(beanie.get_i32("published").unwrap(), -1, "private");
    assert_eq!(beanie.get("height"), Some(&decimal("0.5")));
    assert_eq!(beanie.get_i32("woo_id").unwrap(), 18);
}
