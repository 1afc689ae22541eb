//! Pagination of list RPCs.
//!
//! A page token is the sort key of the last item of the previous page, so a listing stays correct
//! when items before or after the current position are created or deleted between calls.

use super::ApiError;

/// One page of a listing and the token of the next page (empty on the last page).
#[derive(Debug)]
pub(super) struct Page<T> {
    pub(super) items: Vec<T>,
    pub(super) next_page_token: String,
}

/// Returns the page of `items` after `page_token`, of at most `page_size` items (0: all).
///
/// `key` must give every item a distinct sort key, and `is_key` must accept every text that `key`
/// can return, so that a token that no listing returned is rejected.
pub(super) fn paginate<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    is_key: impl Fn(&str) -> bool,
    page_size: i32,
    page_token: &str,
) -> Result<Page<T>, ApiError> {
    let page_size = usize::try_from(page_size).map_err(|_| {
        ApiError::InvalidArgument(format!(
            "invalid page_size {page_size}: use 0 for all items or a positive number"
        ))
    })?;
    if !page_token.is_empty() && !is_key(page_token) {
        return Err(ApiError::InvalidArgument(format!(
            "invalid page_token {page_token:?}: pass the next_page_token of the previous \
             response, or an empty token for the first page"
        )));
    }
    items.sort_by_cached_key(|item| key(item));

    if !page_token.is_empty() {
        items.retain(|item| key(item).as_str() > page_token);
    }
    if page_size == 0 || items.len() <= page_size {
        return Ok(Page {
            items,
            next_page_token: String::new(),
        });
    }
    items.truncate(page_size);
    let next_page_token = items.last().map(&key).unwrap_or_default();
    Ok(Page {
        items,
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(page_size: i32, token: &str) -> Page<u32> {
        paginate(
            vec![3, 1, 2, 5, 4],
            |n| n.to_string(),
            is_number,
            page_size,
            token,
        )
        .unwrap()
    }

    fn is_number(text: &str) -> bool {
        text.parse::<u32>().is_ok()
    }

    #[test]
    fn pages_walk_all_items_in_order() {
        let first = page(2, "");
        assert_eq!(first.items, [1, 2]);
        let second = page(2, &first.next_page_token);
        assert_eq!(second.items, [3, 4]);
        let last = page(2, &second.next_page_token);
        assert_eq!(last.items, [5]);
        assert!(last.next_page_token.is_empty());
    }

    #[test]
    fn zero_page_size_returns_everything() {
        let all = page(0, "");
        assert_eq!(all.items, [1, 2, 3, 4, 5]);
        assert!(all.next_page_token.is_empty());
    }

    #[test]
    fn negative_page_size_is_rejected() {
        let error = paginate(vec![1], |n: &u32| n.to_string(), is_number, -1, "").unwrap_err();
        assert!(matches!(error, ApiError::InvalidArgument(_)));
    }

    #[test]
    fn foreign_page_token_is_rejected() {
        let error = paginate(vec![1], |n: &u32| n.to_string(), is_number, 0, "x").unwrap_err();
        assert!(matches!(error, ApiError::InvalidArgument(_)));
        assert!(error.to_string().contains("\"x\""), "{error}");
    }
}
