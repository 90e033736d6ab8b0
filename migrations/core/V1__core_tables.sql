-- Set `core`, schema `public`: the core backend's users, businesses, products and orders.
--
-- In production the core (Go) backend may own `public` itself; deployments then leave this
-- set out, and the other sets run against the backend's tables. Only public.users(id) and
-- public.orders(id) are referenced from other schemas.
--
-- Money here is in the smallest unit of the currency (cents), as bigint: never a float.

DO $$
BEGIN
    -- Group roles are cluster-wide: another database of the cluster may have created them,
    -- possibly at this very moment, hence the existence check and the exception handler.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fodi_core') THEN
        CREATE ROLE fodi_core NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fodi_readonly') THEN
        CREATE ROLE fodi_readonly NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

CREATE FUNCTION public.set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE public.users (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email        text NOT NULL
                 CONSTRAINT users_email_format CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 320),
    display_name text CONSTRAINT users_display_name_length CHECK (length(display_name) BETWEEN 1 AND 200),
    role         text NOT NULL DEFAULT 'customer'
                 CONSTRAINT users_role_known CHECK (role IN ('customer', 'business_owner', 'courier', 'admin')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Addresses differ in case only by accident: one account per address.
CREATE UNIQUE INDEX users_email_key ON public.users (lower(email));

CREATE TABLE public.businesses (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id    uuid NOT NULL REFERENCES public.users (id),
    name        text NOT NULL CONSTRAINT businesses_name_length CHECK (length(name) BETWEEN 1 AND 200),
    slug        text NOT NULL CONSTRAINT businesses_slug_key UNIQUE
                CONSTRAINT businesses_slug_format CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    description text,
    address     jsonb CONSTRAINT businesses_address_object CHECK (jsonb_typeof(address) = 'object'),
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX businesses_owner_id_idx ON public.businesses (owner_id);

CREATE TABLE public.products (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id  uuid NOT NULL REFERENCES public.businesses (id) ON DELETE CASCADE,
    name         text NOT NULL CONSTRAINT products_name_length CHECK (length(name) BETWEEN 1 AND 200),
    description  text,
    price_minor  bigint NOT NULL CONSTRAINT products_price_not_negative CHECK (price_minor >= 0),
    currency     char(3) NOT NULL DEFAULT 'USD' CONSTRAINT products_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    is_available boolean NOT NULL DEFAULT true,
    -- Dietary tags, allergens, sizes: filtered with @> by the menu queries.
    attributes   jsonb NOT NULL DEFAULT '{}'
                 CONSTRAINT products_attributes_object CHECK (jsonb_typeof(attributes) = 'object'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT products_business_name_key UNIQUE (business_id, name)
);
CREATE INDEX products_attributes_idx ON public.products USING gin (attributes jsonb_path_ops);

CREATE TABLE public.orders (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES public.users (id),
    business_id uuid NOT NULL REFERENCES public.businesses (id),
    status      text NOT NULL DEFAULT 'pending'
                CONSTRAINT orders_status_known CHECK (status IN
                    ('pending', 'confirmed', 'preparing', 'ready', 'delivering', 'delivered', 'cancelled')),
    total_minor bigint NOT NULL DEFAULT 0 CONSTRAINT orders_total_not_negative CHECK (total_minor >= 0),
    currency    char(3) NOT NULL DEFAULT 'USD' CONSTRAINT orders_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_user_id_created_at_idx ON public.orders (user_id, created_at DESC);
CREATE INDEX orders_business_id_created_at_idx ON public.orders (business_id, created_at DESC);

CREATE TABLE public.order_items (
    order_id         uuid NOT NULL REFERENCES public.orders (id) ON DELETE CASCADE,
    product_id       uuid NOT NULL REFERENCES public.products (id),
    quantity         integer NOT NULL CONSTRAINT order_items_quantity_positive CHECK (quantity > 0),
    unit_price_minor bigint NOT NULL CONSTRAINT order_items_price_not_negative CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, product_id)
);
-- Deleting or re-pricing a product looks up its order lines.
CREATE INDEX order_items_product_id_idx ON public.order_items (product_id);

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON public.users
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER businesses_set_updated_at BEFORE UPDATE ON public.businesses
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER products_set_updated_at BEFORE UPDATE ON public.products
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER orders_set_updated_at BEFORE UPDATE ON public.orders
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

GRANT SELECT, INSERT, UPDATE, DELETE
    ON public.users, public.businesses, public.products, public.orders, public.order_items
    TO fodi_core;
GRANT SELECT
    ON public.users, public.businesses, public.products, public.orders, public.order_items
    TO fodi_readonly;
