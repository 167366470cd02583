defmodule Corpus.RouterTest do
  use ExUnit.Case, async: true
  alias Corpus.Router.App

  test "root" do
    assert App.dispatch("GET", "/") == {:ok, :home, %{}}
  end

  test "literal paths" do
    assert App.dispatch("GET", "/users") == {:ok, :index, %{}}
    assert App.dispatch("POST", "/users") == {:ok, :create, %{}}
  end

  test "parameters" do
    assert App.dispatch("GET", "/users/42") == {:ok, :show, %{"id" => "42"}}

    assert App.dispatch("GET", "/users/7/posts/9") ==
             {:ok, :post, %{"id" => "7", "post_id" => "9"}}
  end

  test "scopes" do
    assert App.dispatch("GET", "/admin/stats") == {:ok, :stats, %{}}
    assert App.dispatch("GET", "/admin/users/1") == {:ok, :admin_user, %{"id" => "1"}}
  end

  test "the scope ends" do
    assert App.dispatch("GET", "/files/a.txt") == {:ok, :file, %{"name" => "a.txt"}}
    assert App.dispatch("GET", "/admin/files/a.txt") == {:error, :not_found}
  end

  test "method matters" do
    assert App.dispatch("POST", "/users/1") == {:error, :not_found}
  end

  test "trailing slashes" do
    assert App.dispatch("GET", "/users/") == {:ok, :index, %{}}
  end
end
