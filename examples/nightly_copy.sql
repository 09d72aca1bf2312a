-- A nightly copy job: delivered revenue per day, region and product category, computed from
-- the shop's orders (one database) and the CRM's customers and regions (another), appended to
-- the warehouse (a third). Sources and set-up: examples/nightly_copy.toml. Run it with
--
--   ibarrow --config examples/nightly_copy.toml -f examples/nightly_copy.sql
--
-- Each run copies the days after the last day already in the warehouse, up to yesterday, so a
-- run that is repeated or missed copies every day exactly once. The INSERT goes to the
-- warehouse as one transaction: committed after its last row, rolled back on any error.
INSERT INTO warehouse.main.daily_revenue (day, region, category, orders, revenue)
SELECT o.order_date,
       r.name,
       p.category,
       count(DISTINCT o.order_id),
       CAST(sum(l.quantity * l.unit_price * (1 - l.discount)) AS DECIMAL(12, 2))
FROM shop.main.orders o
JOIN shop.main.order_lines l ON l.order_id = o.order_id
JOIN shop.main.products p ON p.product_id = l.product_id
JOIN crm.main.customers c ON c.customer_id = o.customer_id
JOIN crm.main.regions r ON r.region_id = c.region_id
WHERE o.status = 'delivered'
  AND o.order_date > (SELECT coalesce(max(day), DATE '1970-01-01')
                      FROM warehouse.main.daily_revenue)
  AND o.order_date < current_date()
GROUP BY o.order_date, r.name, p.category;

-- What the warehouse holds now.
SELECT count(*) AS copied_rows,
       min(day) AS first_day,
       max(day) AS last_day,
       sum(revenue) AS revenue
FROM warehouse.main.daily_revenue;
